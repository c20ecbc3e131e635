"""The prior points of the pyramid levels, and what lives on them.

Every dense head predicts one box and one score vector per cell of each
level. Cell (i, j) of a level with stride s has its prior point at
(j·s, i·s), the cell's corner, as in both published TOOD implementations.
Flattened, the priors of all levels follow each other level after level,
row-major within a level: that is the prior order of every (B, N, ...)
tensor in training and inference.

Shapes: B images, N priors of all levels, C channels, H×W one level.
"""
from typing import List, NamedTuple, Sequence, Tuple

import torch
from torch import Tensor

from tood.structures import DetDataSample, delta2bbox, distance2bbox


class Priors(NamedTuple):
    """The priors of a batch."""
    points: Tensor  # (N, 2) x, y in input pixels
    strides: Tensor  # (N,) the stride of each prior's level
    anchors: Tensor  # (N, 4) one square anchor per point (ATSS)
    level_sizes: Tuple[Tuple[int, int], ...]  # (H, W) of each level
    valid: Tensor  # (B, N) bool: on the image's own padded area


def grid_points(level_sizes: Sequence[Tuple[int, int]],
                strides: Sequence[float],
                device: torch.device) -> Tuple[Tensor, Tensor]:
    """(N, 2) prior points in input pixels and (N,) their strides."""
    points, prior_strides = [], []
    for (h, w), s in zip(level_sizes, strides):
        ys = torch.arange(h, device=device, dtype=torch.float32) * s
        xs = torch.arange(w, device=device, dtype=torch.float32) * s
        yy, xx = torch.meshgrid(ys, xs, indexing='ij')
        points.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], -1))
        prior_strides.append(torch.full((h * w, ), float(s), device=device))
    return torch.cat(points), torch.cat(prior_strides)


def square_anchors(points: Tensor, strides: Tensor, scale: float) -> Tensor:
    """One square of side ``scale`` × stride centred on each point:
    (N, 2), (N,) -> (N, 4)."""
    half = (strides * scale / 2)[:, None]
    return torch.cat([points - half, points + half], -1)


def make_priors(level_sizes: Sequence[Tuple[int, int]], strides: Sequence[int],
                anchor_scale: float, data_samples: List[DetDataSample],
                device: torch.device) -> Priors:
    """The priors of a batch whose levels have ``level_sizes``.

    A prior is valid for an image when it lies on the image's own padded
    area (its ``pad_shape``): the extra padding that batching adds to
    smaller images must not be trained.
    """
    level_sizes = tuple(tuple(s) for s in level_sizes)
    points, prior_strides = grid_points(level_sizes, strides, device)
    valid = []
    for meta in (sample.metainfo for sample in data_samples):
        pad_h, pad_w = meta.get('pad_shape', meta['batch_input_shape'])
        # Point (j·s, i·s) is on the area when j·s < pad_w and i·s < pad_h.
        valid.append((points[:, 0] < pad_w) & (points[:, 1] < pad_h))
    return Priors(points, prior_strides,
                  square_anchors(points, prior_strides, anchor_scale),
                  level_sizes, torch.stack(valid))


def levels_to_priors(maps: Sequence[Tensor]) -> Tensor:
    """Per level (B, C, H, W) -> (B, N, C), in prior order."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], 1)


def decode_level(pred: Tensor, anchor_type: str, anchor_scale: float = 8,
                 stds: Sequence[float] = (0.1, 0.1, 0.2, 0.2)) -> Tensor:
    """Boxes of one level from its regression map, in units of its stride.

    Args:
        pred: (B, 4, H, W); for ``'anchor_free'`` the distances from each
            prior point to the box sides (left, top, right, bottom), for
            ``'anchor_based'`` the deltas (dx, dy, dw, dh) against the
            point's square anchor of side ``anchor_scale``. In stride
            units, where the coders give the same as in pixels divided by
            the stride (both are scale invariant).
    Returns:
        (B, 4, H, W) boxes x1, y1, x2, y2.
    """
    B, _, H, W = pred.shape
    points, one = grid_points([(H, W)], [1], pred.device)  # stride 1
    pred = pred.permute(0, 2, 3, 1).reshape(B, H * W, 4)
    boxes = (distance2bbox(points, pred) if anchor_type == 'anchor_free' else
             delta2bbox(square_anchors(points, one, anchor_scale), pred, stds))
    return boxes.reshape(B, H, W, 4).permute(0, 3, 1, 2).contiguous()
