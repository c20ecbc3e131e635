"""Prior points and anchors on the feature-map grids."""
import math
from typing import List, Sequence, Tuple

import torch
from torch import Tensor


def grid_priors(featmap_sizes: Sequence[Tuple[int, int]],
                strides: Sequence[int],
                device: torch.device) -> Tuple[Tensor, Tensor]:
    """Prior points of all levels, concatenated level after level.

    Cell (i, j) of a level with stride s has its prior point at (j·s, i·s),
    the cell's corner, as in both published TOOD implementations.

    Returns:
        points: (N, 2) as (x, y) in input pixels, row-major within a level.
        prior_strides: (N,) the stride of each prior's level.
    """
    points, prior_strides = [], []
    for (h, w), s in zip(featmap_sizes, strides):
        ys = torch.arange(h, device=device, dtype=torch.float32) * s
        xs = torch.arange(w, device=device, dtype=torch.float32) * s
        yy, xx = torch.meshgrid(ys, xs, indexing='ij')
        points.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], -1))
        prior_strides.append(torch.full((h * w, ), float(s), device=device))
    return torch.cat(points), torch.cat(prior_strides)


def square_anchors(points: Tensor, prior_strides: Tensor,
                   scale: float) -> Tensor:
    """One square anchor of side ``scale`` × stride centred on each point.

    (N, 2), (N,) -> (N, 4).
    """
    half = (prior_strides * scale / 2)[:, None]
    return torch.cat([points - half, points + half], -1)


def valid_prior_mask(featmap_sizes: Sequence[Tuple[int, int]],
                     strides: Sequence[int],
                     pad_shapes: Sequence[Tuple[int, int]],
                     device: torch.device) -> Tensor:
    """Which priors of each image lie on its own padded image.

    Priors over the extra padding that batching adds must not be trained.

    Returns:
        (B, N) bool.
    """
    masks = []
    for pad_h, pad_w in pad_shapes:
        per_level: List[Tensor] = []
        for (h, w), s in zip(featmap_sizes, strides):
            valid_h = min(math.ceil(pad_h / s), h)
            valid_w = min(math.ceil(pad_w / s), w)
            m = torch.zeros(h, w, dtype=torch.bool, device=device)
            m[:valid_h, :valid_w] = True
            per_level.append(m.reshape(-1))
        masks.append(torch.cat(per_level))
    return torch.stack(masks)
