"""Converting published weights into this toolbox's checkpoints; the
command-line front ends are in ``tools/model_converters``."""
from .checkpoint_io import (load_source_checkpoint, save_converted,
                            split_checkpoint)
from .imagenet_resnet import (ArchitectureError, backbone_state_dict,
                              check_backbone_weights, infer_resnet_arch)
from .tood_mmdet import (FORMAT_NAMES, OFFICIAL_RENAMES, ConversionError,
                         SourceInfo, check_against_model,
                         convert_tood_state_dict, converted_meta,
                         detect_source, recorded_anchor_type)

__all__ = [
    'ArchitectureError', 'ConversionError', 'FORMAT_NAMES',
    'OFFICIAL_RENAMES', 'SourceInfo', 'backbone_state_dict',
    'check_against_model', 'check_backbone_weights',
    'convert_tood_state_dict', 'converted_meta', 'detect_source',
    'infer_resnet_arch', 'load_source_checkpoint', 'recorded_anchor_type',
    'save_converted', 'split_checkpoint'
]
