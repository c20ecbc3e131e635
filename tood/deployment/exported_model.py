"""An exported detector as the model of mmengine's runner, so that
``tools/test.py CONFIG MODEL.onnx`` evaluates it with the config's own
test dataloader, evaluator and hooks, exactly as a checkpoint.

``use_exported_model(cfg, 'tood.onnx')`` edits a loaded config:
``cfg.model`` becomes an ``ExportedDetector`` holding the exported file
and the config's own model settings (to check the file against them).
The runner then builds it from the registry like any model; its
``test_step`` runs the file through ``OnnxDetector``: the collated uint8
images of the test pipeline, one at a time at its own size.
"""
from typing import Dict, List, Optional

import torch
from mmengine.config import Config
from mmengine.model import BaseModel

from tood.errors import ConfigError
from tood.registry import MODELS

from .onnx_export import ExportError
from .onnx_runtime import OnnxDetector
from .runtimes import RUNTIMES

# Hooks that act on a PyTorch model's weights; an exported file has its
# weights baked in (an EMA checkpoint is exported with the averaged ones).
WEIGHT_HOOKS = ('EMAHook', )


@MODELS.register_module()
class ExportedDetector(BaseModel):
    """An exported ``.onnx`` file behind ``BaseModel``'s interface.

    Args:
        file: the exported (or quantized) model.
        runtime: 'onnxruntime' or 'openvino'.
        model: the config's ``model`` dict; the file's class count and
            baked post-processing are checked against it, and a
            ``--no-nms`` export post-processes with its ``test_cfg``.

    The runtime uses its default thread count (one per core). ONNX
    Runtime runs on CUDA where the installed onnxruntime has it (device
    'auto'), OpenVINO on the CPU.
    """

    def __init__(self,
                 file: str,
                 runtime: str = 'onnxruntime',
                 model: Optional[dict] = None):
        super().__init__()
        self.detector = OnnxDetector(
            file,
            Config(dict(model=model)) if model is not None else None,
            device='auto',
            runtime=runtime)
        # What NumClassCheckHook compares with the dataset's classes.
        self.num_classes = self.detector.num_classes

    def test_step(self, data: Dict) -> List:
        """Detections of a collated batch of the test pipeline
        (``OnnxDetector.test_step``)."""
        return self.detector.test_step(data)

    def val_step(self, data: Dict) -> List:
        return self.detector.test_step(data)

    def forward(self,
                inputs: List[torch.Tensor],
                data_samples: Optional[List] = None,
                mode: str = 'predict') -> List:
        """Only ``mode='predict'``: the file holds no losses."""
        if mode != 'predict':
            raise ExportError(
                f"an exported model only predicts; mode {mode!r} needs the "
                'PyTorch checkpoint')
        return self.detector.test_step(
            dict(inputs=inputs, data_samples=data_samples))


def use_exported_model(cfg: Config,
                       file: str,
                       runtime: str = 'onnxruntime') -> None:
    """Edit a tool's config (in place) to evaluate ``file`` instead of a
    checkpoint: ``cfg.model`` becomes an ``ExportedDetector`` holding the
    old ``cfg.model``, no checkpoint is loaded, and the hooks that act on
    PyTorch weights (``WEIGHT_HOOKS``) are dropped.

    Raises:
        ConfigError: an unknown runtime, ``compile`` set, or a launcher
            (the file runs in one process; a DDP wrapper needs
            parameters to synchronise).
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f'unknown runtime {runtime!r}: choose one of '
                          f'{", ".join(RUNTIMES)}')
    if cfg.get('compile'):
        raise ConfigError(
            f'{file} is an exported model: torch.compile (--compile, '
            'cfg.compile) applies to checkpoints only')
    if cfg.get('launcher', 'none') != 'none':
        raise ConfigError(
            f'{file} is an exported model: it is evaluated in one process '
            '(run without --launcher / dist_test.sh)')
    cfg.model = dict(
        type='ExportedDetector',
        file=file,
        runtime=runtime,
        model=cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else
        dict(cfg.model))
    cfg.load_from = None
    cfg.resume = False
    hooks = cfg.get('default_hooks') or {}
    for name in [n for n, hook in hooks.items()
                 if isinstance(hook, dict) and hook.get('type') in
                 WEIGHT_HOOKS]:
        hooks.pop(name)
    cfg.custom_hooks = [
        hook for hook in cfg.get('custom_hooks') or []
        if hook.get('type') not in WEIGHT_HOOKS
    ]
