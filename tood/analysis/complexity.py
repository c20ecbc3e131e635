"""Parameters and FLOPs of a detector built from its config.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` on one forward
pass of ``model(inputs, mode='tensor')`` (backbone, FPN and head outputs;
no post-processing) with batch 1. It counts matrix multiplications and
convolutions at 2 FLOPs per multiply-add; elementwise work (norms,
activations, additions, sampling) is not counted. torchvision's deformable
convolution has no formula there: it is counted here like a plain
convolution of the same shape, without its bilinear sampling.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

FLOP_NOTE = ('FLOPs: convolutions and matrix products of one forward pass '
             '(backbone, neck, head; no post-processing), 2 FLOPs per '
             'multiply-add; norms, activations and other elementwise ops '
             'are not counted; deformable convs are counted as plain convs '
             'of the same shape, without their bilinear sampling.')


@dataclass
class Complexity:
    """Size and cost of a model.

    Attributes:
        params: number of parameters (trainable or frozen).
        flops: FLOPs of one image, 2 per multiply-add.
        input_shape: (H, W) fed to the network, after padding.
        parts: FLOPs of each top-level submodule (backbone, neck, bbox_head).
        deformable_flops: the part of ``flops`` from deformable convs.
    """
    params: int
    flops: int
    input_shape: Tuple[int, int]
    parts: Dict[str, int] = field(default_factory=dict)
    deformable_flops: int = 0


def _deform_conv_flops(x_shape, w_shape, *args, out_shape=None, **kwargs):
    """torchvision::deform_conv2d as a convolution of the same shapes."""
    return conv_flop_count(list(x_shape), list(w_shape), list(out_shape))


def pad_divisor(cfg: Config) -> int:
    return cfg.model.get('data_preprocessor', {}).get('pad_size_divisor', 1)


def padded(shape: Sequence[int], divisor: int) -> Tuple[int, int]:
    h, w = shape
    return (math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor)


def count_complexity(model: torch.nn.Module,
                     input_shape: Tuple[int, int],
                     device: str = 'cpu') -> Complexity:
    """Parameters, and FLOPs of one (1, 3, H, W) input of zeros.

    Args:
        model: a detector whose ``forward(inputs, mode='tensor')`` runs the
            network (TOOD's detector class).
        input_shape: (H, W), used as it is (pad it first).
        device: where the forward pass runs.
    """
    model = model.to(device).eval()
    params = sum(p.numel() for p in model.parameters())
    inputs = torch.zeros(1, 3, *input_shape, device=device)
    counter = FlopCounterMode(
        display=False,
        custom_mapping={
            torch.ops.torchvision.deform_conv2d: _deform_conv_flops
        })
    with torch.no_grad(), counter:
        model(inputs, mode='tensor')
    counts = counter.get_flop_counts()
    root = type(model).__name__
    parts = {
        name[len(root) + 1:]: sum(ops.values())
        for name, ops in counts.items()
        if name.startswith(root + '.') and name.count('.') == 1
    }
    deformable = sum(
        flops for op, flops in counts.get('Global', {}).items()
        if 'deform_conv2d' in str(op))
    return Complexity(
        params=params,
        flops=counter.get_total_flops(),
        input_shape=tuple(input_shape),
        parts=parts,
        deformable_flops=deformable)


def config_complexity(cfg: Config,
                      shape: Optional[Tuple[int, int]] = None,
                      device: str = 'cpu') -> Complexity:
    """Build the config's model and count it at ``shape`` (H, W) padded
    like the data preprocessor pads, or at the config's test size."""
    from tood.apis import init_detector
    shape = shape or eval_image_shape(cfg)
    return count_complexity(init_detector(cfg, None, 'cpu'),
                            padded(shape, pad_divisor(cfg)), device)


def eval_image_shape(cfg: Config,
                     default: Tuple[int, int] = (800, 1333)
                     ) -> Tuple[int, int]:
    """(H, W) of the largest image the test pipeline produces.

    The ``scale`` of a ``Resize`` in the test pipeline (mmcv's (W, H)), else
    the ``img_size`` of a ``data_preparer`` that draws square images (the
    shapes set's ``ShapesPreparer``), else ``default``.
    """
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    for step in dataset.get('pipeline', []):
        if step.get('type') == 'Resize' and step.get('scale'):
            w, h = step['scale']
            return (int(h), int(w))
    preparers = cfg.get('data_preparer') or []
    if isinstance(preparers, dict):
        preparers = [preparers]
    for preparer in preparers:
        if preparer.get('img_size'):
            return (int(preparer['img_size']), int(preparer['img_size']))
    return default
