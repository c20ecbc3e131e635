"""ImageNet ResNet/ResNeXt weights -> a backbone checkpoint for ``init_cfg``.

torchvision's ResNet and ResNeXt (``resnet18`` ... ``resnet152``,
``resnext50_32x4d``, ``resnext101_32x8d``, ``resnext101_64x4d``) use the
same parameter names as our backbone; so do MMPretrain/MMClassification
ImageNet checkpoints once their ``backbone.`` prefix is removed. What a
conversion adds is a check: the architecture (depth, groups, width per
group) is read off the tensors, our backbone is built with it and the
weights are loaded strictly, so a checkpoint that does not fit is refused
here instead of being half loaded with a warning at training time.

Keys dropped: the ImageNet classifier (torchvision ``fc.weight``/``fc.bias``;
everything outside ``backbone.`` in an MMPretrain checkpoint).
"""
from collections import OrderedDict
from typing import Dict, List, Tuple

from torch import Tensor

from tood.models.backbones.resnet import (Bottleneck, ResNet,
                                          convert_torchvision_resnet)
from tood.models.backbones.resnext import ResNeXt


class ArchitectureError(ValueError):
    """The weights are not those of a ResNet/ResNeXt our backbone builds."""


def backbone_state_dict(
        state_dict: Dict[str, Tensor]
) -> Tuple['OrderedDict[str, Tensor]', List[str]]:
    """The backbone's tensors under our names, and the keys dropped.

    Args:
        state_dict: a torchvision state dict, or an MMPretrain model's
            (``backbone.*``, ``neck.*``, ``head.*``), without ``module.``.
    """
    if any(k.startswith('backbone.') for k in state_dict):
        dropped = [k for k in state_dict if not k.startswith('backbone.')]
        state_dict = OrderedDict((k[len('backbone.'):], v)
                                 for k, v in state_dict.items()
                                 if k.startswith('backbone.'))
    else:
        dropped = []
    kept = convert_torchvision_resnet(state_dict)
    dropped += [k for k in state_dict if k not in kept]
    return kept, dropped


def infer_resnet_arch(state_dict: Dict[str, Tensor]) -> dict:
    """Backbone config arguments that these weights were trained with.

    Returns:
        ``dict(type='ResNet' | 'ResNeXt', depth=..., ...)`` with
        ``groups``/``base_width`` for ResNeXt and ``stem_channels``/
        ``base_channels`` when they are not the standard 64.
    Raises:
        ArchitectureError: stage depths or widths that no ResNet/ResNeXt
            has (e.g. Wide ResNet, whose bottleneck is wider than ResNet's
            without groups).
    """
    if 'conv1.weight' not in state_dict:
        raise ArchitectureError('no stem conv (conv1.weight): not a ResNet '
                                'state dict')
    num_blocks = []
    for stage in range(1, 5):
        prefix = f'layer{stage}.'
        blocks = {
            int(k[len(prefix):].split('.')[0])
            for k in state_dict if k.startswith(prefix)
        }
        if not blocks:
            break
        num_blocks.append(max(blocks) + 1)
    bottleneck = 'layer1.0.conv3.weight' in state_dict
    depth = None
    for d, (block, stage_blocks) in ResNet.arch_settings.items():
        if (block is Bottleneck) == bottleneck and \
                tuple(stage_blocks) == tuple(num_blocks):
            depth = d
    if depth is None:
        raise ArchitectureError(
            f'{"bottleneck" if bottleneck else "basic"} blocks per stage '
            f'{tuple(num_blocks)} match no ResNet depth')

    stem_channels = state_dict['conv1.weight'].shape[0]
    if bottleneck:
        planes = state_dict['layer1.0.conv3.weight'].shape[0] // 4
        width, in_per_group = state_dict['layer1.0.conv2.weight'].shape[:2]
        groups = width // in_per_group
    else:
        planes = state_dict['layer1.0.conv1.weight'].shape[0]
        width, groups = planes, 1
    arch = dict(type='ResNet', depth=depth)
    if groups > 1:
        base_width = width // groups * 64 // planes
        if (planes * base_width // 64) * groups != width:
            raise ArchitectureError(
                f'a grouped 3x3 conv of width {width} in {groups} groups '
                f'fits no base width for {planes} planes')
        arch = dict(
            type='ResNeXt', depth=depth, groups=groups, base_width=base_width)
    elif width != planes:
        raise ArchitectureError(
            f'the bottleneck is {width} wide for {planes} planes without '
            'groups (a Wide ResNet?); our ResNet does not build that')
    if stem_channels != 64:
        arch['stem_channels'] = stem_channels
    if planes != 64:
        arch['base_channels'] = planes
    return arch


def check_backbone_weights(state_dict: Dict[str, Tensor], arch: dict) -> None:
    """Build our backbone as ``arch`` says and load ``state_dict`` strictly.

    BatchNorm's ``num_batches_tracked`` may be absent (older torchvision
    files); BatchNorm then fills it in itself.

    Raises:
        ArchitectureError: with the missing/unexpected keys or the shape
            mismatch.
    """
    arch = dict(arch)
    cls = ResNeXt if arch.pop('type') == 'ResNeXt' else ResNet
    model = cls(**arch, init_cfg=None)
    try:
        model.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError as error:
        raise ArchitectureError(
            f'the weights do not fit {cls.__name__}({arch}): {error}') \
            from error
