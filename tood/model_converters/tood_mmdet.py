"""TOOD checkpoints of the official code and of MMDetection -> ours.

Three layouts exist:

* ``official``: fcjian/TOOD, on MMDetection 2.14 (the paper's weights).
  Its T-head names the layer-attention convs ``la_conv1``/``la_conv2``
  (separate modules, the ReLU and sigmoid as ``relu``/``sigmoid`` without
  weights) and the probability-map and offset convs ``cls_prob_conv1/2``
  and ``reg_offset_conv1/2``.
* ``mmdet2``/``mmdet3``: MMDetection's TOOD (2.20 onwards and 3.x; the
  3.x model zoo serves the same files). The same convs live in
  ``nn.Sequential`` containers: ``layer_attention.0``/``.2``,
  ``cls_prob_module.0``/``.2``, ``reg_offset_module.0``/``.2`` (index 1 is
  the ReLU, 3 the attention's sigmoid).

Everything else is named alike in all of them and in this toolbox: the
ResNet/ResNeXt backbone (``conv1``, ``bn1``, ``layerX.Y.convZ``,
``downsample.0/1``; a DCNv2 3x3 conv keeps its offset predictor as
``conv2.conv_offset``), the FPN (``lateral_convs.i.conv``,
``fpn_convs.i.conv``, extra levels after the per-level ones) and the rest
of the head (``inter_convs.i.conv``/``.gn``, a DCNv2 interactive conv with
``conv.conv_offset``, ``reduction_conv.conv``/``.gn``, ``tood_cls``,
``tood_reg``, ``scales.i.scale``). Every tensor has the same shape and
layout as ours (one prior per location, so ``tood_cls`` has K and
``tood_reg`` 4 output channels in both anchor types), hence conversion is a
renaming only. No key is dropped: BatchNorm's ``num_batches_tracked`` is
kept, the anchor generator, losses and data preprocessor hold no weights.
"""
import os.path as osp
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from torch import Tensor

# Official (fcjian/TOOD) name -> ours, matched on whole key segments.
OFFICIAL_RENAMES: Tuple[Tuple[str, str], ...] = (
    (r'^bbox_head\.(cls|reg)_decomp\.la_conv1\.',
     r'bbox_head.\1_decomp.layer_attention.0.'),
    (r'^bbox_head\.(cls|reg)_decomp\.la_conv2\.',
     r'bbox_head.\1_decomp.layer_attention.2.'),
    (r'^bbox_head\.cls_prob_conv1\.', 'bbox_head.cls_prob_module.0.'),
    (r'^bbox_head\.cls_prob_conv2\.', 'bbox_head.cls_prob_module.2.'),
    (r'^bbox_head\.reg_offset_conv1\.', 'bbox_head.reg_offset_module.0.'),
    (r'^bbox_head\.reg_offset_conv2\.', 'bbox_head.reg_offset_module.2.'),
)
_OFFICIAL_MARK = re.compile(
    r'^bbox_head\.((cls|reg)_decomp\.la_conv[12]|cls_prob_conv[12]'
    r'|reg_offset_conv[12])\.')
_MMDET_MARK = re.compile(
    r'^bbox_head\.((cls|reg)_decomp\.layer_attention\.[02]'
    r'|cls_prob_module\.[02]|reg_offset_module\.[02])\.')

# Every name our TOOD (ResNet/ResNeXt, optionally DCNv2, FPN, T-head) has.
_TOOD_KEY = re.compile(
    r'^(?:'
    r'backbone\.(?:conv1\.weight|bn1\.\w+'
    r'|layer\d+\.\d+\.(?:conv[123](?:\.conv_offset)?|bn[123]'
    r'|downsample\.[01])\.\w+)'
    r'|neck\.(?:lateral|fpn)_convs\.\d+\.conv\.(?:weight|bias)'
    r'|bbox_head\.(?:'
    r'inter_convs\.\d+\.(?:conv(?:\.conv_offset)?|gn)\.(?:weight|bias)'
    r'|(?:cls|reg)_decomp\.(?:layer_attention\.[02]'
    r'|reduction_conv\.(?:conv|gn))\.(?:weight|bias)'
    r'|tood_(?:cls|reg)\.(?:weight|bias)'
    r'|(?:cls_prob|reg_offset)_module\.[02]\.(?:weight|bias)'
    r'|scales\.\d+\.scale)'
    r')$')

FORMAT_NAMES = {
    'official': 'official TOOD (fcjian/TOOD, MMDetection 2.14)',
    'mmdet2': 'MMDetection 2.x TOOD',
    'mmdet3': 'MMDetection 3.x TOOD',
    'mmdet': 'MMDetection TOOD (version not recorded)',
}


class ConversionError(ValueError):
    """The checkpoint is not a TOOD checkpoint we can convert exactly."""


@dataclass
class SourceInfo:
    """What :func:`detect_source` found out about a checkpoint.

    Attributes:
        format: a key of :data:`FORMAT_NAMES`.
        version: the MMDetection (or mmengine) version the file records,
            '' if none.
        classes: the class names the file records, None if none.
    """
    format: str
    version: str
    classes: Optional[List[str]]

    @property
    def description(self) -> str:
        name = FORMAT_NAMES[self.format]
        return f'{name}, saved by {self.version}' if self.version else name


def detect_source(state_dict: Dict[str, Tensor], meta: Dict[str, Any],
                  checkpoint: Optional[Dict[str, Any]] = None) -> SourceInfo:
    """Tell the three layouts apart.

    The head's key names separate official from MMDetection; the meta
    separates MMDetection 2.x (mmcv runner: ``mmdet_version``) from 3.x
    (mmengine runner: ``mmengine_version``, ``dataset_meta``, a
    ``message_hub`` next to the weights).

    Raises:
        ConversionError: the state dict has no TOOD head, or both namings.
    """
    official = any(_OFFICIAL_MARK.match(k) for k in state_dict)
    mmdet = any(_MMDET_MARK.match(k) for k in state_dict)
    if official and mmdet:
        raise ConversionError(
            'the head mixes official (la_conv1, cls_prob_conv1 ...) and '
            'MMDetection (layer_attention.0, cls_prob_module.0 ...) names')
    if not (official or mmdet):
        raise ConversionError(
            'no TOOD head found: expected bbox_head.cls_decomp.la_conv1 '
            '(official) or bbox_head.cls_decomp.layer_attention.0 '
            '(MMDetection) weights')

    mmdet_version = str(meta.get('mmdet_version', ''))
    mmengine_version = str(meta.get('mmengine_version', ''))
    if official:
        fmt = 'official'
    elif mmengine_version or 'dataset_meta' in meta or (
            checkpoint is not None and 'message_hub' in checkpoint):
        fmt = 'mmdet3'
    elif mmdet_version.startswith('2.'):
        fmt = 'mmdet2'
    elif mmdet_version.startswith('3.'):
        fmt = 'mmdet3'
    else:
        fmt = 'mmdet'
    if mmdet_version:
        version = f'MMDetection {mmdet_version}'
    elif mmengine_version:
        version = f'mmengine {mmengine_version}'
    else:
        version = ''

    classes = meta.get('dataset_meta', {}).get('classes') if isinstance(
        meta.get('dataset_meta'), dict) else None
    if classes is None:
        classes = meta.get('CLASSES')
    if classes is not None:
        classes = [str(c) for c in classes]
    return SourceInfo(fmt, version, classes)


def convert_tood_state_dict(state_dict: Dict[str, Tensor],
                            source_format: str) -> 'OrderedDict[str, Tensor]':
    """Rename a TOOD state dict into this toolbox's names.

    Args:
        state_dict: the source weights, without a ``module.`` prefix.
        source_format: ``'official'``, or one of the MMDetection formats
            (whose names are already ours).
    Returns:
        The same tensors (not copied) under our names, in the source order.
    Raises:
        ConversionError: a key is not part of a ResNet/ResNeXt + FPN +
            T-head TOOD (e.g. another detector's head), or two keys map to
            one name. Nothing is dropped silently.
    """
    if source_format not in FORMAT_NAMES:
        raise ValueError(f'unknown source format {source_format!r}; '
                         f'expected one of {sorted(FORMAT_NAMES)}')
    converted: 'OrderedDict[str, Tensor]' = OrderedDict()
    unknown = []
    for key, value in state_dict.items():
        new_key = key
        if source_format == 'official':
            for pattern, replacement in OFFICIAL_RENAMES:
                new_key = re.sub(pattern, replacement, new_key)
        if not _TOOD_KEY.match(new_key):
            unknown.append(key)
            continue
        if new_key in converted:
            raise ConversionError(f'{key} and another key both map to '
                                  f'{new_key}')
        converted[new_key] = value
    if unknown:
        shown = ', '.join(unknown[:20])
        more = f' and {len(unknown) - 20} more' if len(unknown) > 20 else ''
        raise ConversionError(
            f'{len(unknown)} keys are not part of a TOOD model '
            f'(ResNet/ResNeXt + FPN + T-head): {shown}{more}')
    return converted


def converted_meta(info: SourceInfo, source_path: str) -> dict:
    """The ``meta`` written next to converted weights (plain values only;
    ``dataset_meta.classes`` as mmengine checkpoints have it)."""
    meta: Dict[str, Any] = dict(
        converted_from=dict(
            file=osp.basename(source_path), format=info.format,
            description=info.description))
    if info.classes is not None:
        meta['dataset_meta'] = dict(classes=list(info.classes))
    return meta


def recorded_anchor_type(meta: Dict[str, Any]) -> Optional[str]:
    """The head's ``anchor_type`` in the config text the checkpoint carries
    (``meta['config']`` from MMDetection 2.x, ``meta['cfg']`` from 3.x),
    or None if it records none.

    The weights of the anchor-free and anchor-based heads have the same
    names and shapes, so only this tells them apart.
    """
    text = meta.get('config') or meta.get('cfg') or ''
    if not isinstance(text, str):
        return None
    found = re.search(r"anchor_type\W+(anchor_free|anchor_based)", text)
    return found.group(1) if found else None


def check_against_model(state_dict: Dict[str, Tensor], model_cfg: dict,
                        meta: Optional[Dict[str, Any]] = None) -> None:
    """Build our TOOD from ``model_cfg`` and load ``state_dict`` strictly.

    ``tools/test.py`` loads checkpoints non-strictly (like MMDetection), so
    a mismatch would only be a warning there and the evaluation would run
    on partly random weights; this check turns it into an error up front.

    Raises:
        ConversionError: missing or unexpected keys, a shape mismatch, or
            an anchor type different from the one ``meta`` records.
    """
    from tood.registry import MODELS
    from tood.utils import register_all_modules
    register_all_modules()
    model_cfg = dict(model_cfg)
    # Only the structure matters: no ImageNet weights are fetched.
    model_cfg['backbone'] = dict(model_cfg['backbone'], init_cfg=None)
    model = MODELS.build(model_cfg)
    try:
        model.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError as error:
        raise ConversionError(
            f'the converted weights do not fit the config: {error}') \
            from error
    recorded = recorded_anchor_type(meta or {})
    wanted = model.bbox_head.anchor_type
    if recorded is not None and recorded != wanted:
        raise ConversionError(
            f'the checkpoint was trained with anchor_type={recorded!r} but '
            f'the config builds {wanted!r}: the weights would load but '
            'decode boxes wrongly; use the matching config')
