"""Box arithmetic shared by heads, assigners and losses: the one IoU family,
the two box coders and the point-in-box tests.

All boxes are ``(x1, y1, x2, y2)``; every function broadcasts over leading
dimensions, so ``box_iou(a, b)`` of two (M, 4) tensors is the IoU of
corresponding boxes and ``box_iou(a[:, None], b[None])`` the (M, N) table.
"""
import math
from typing import Sequence, Tuple

import torch
from torch import Tensor


def distance2bbox(points: Tensor, distance: Tensor) -> Tensor:
    """Boxes from a point and its distances to the four sides.

    (..., 2) as (x, y), (..., 4) as (left, top, right, bottom) -> (..., 4).
    """
    x, y = points.unbind(-1)
    left, top, right, bottom = distance.unbind(-1)
    return torch.stack([x - left, y - top, x + right, y + bottom], -1)


def delta2bbox(anchors: Tensor,
               deltas: Tensor,
               stds: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
               max_ratio: float = abs(math.log(16 / 1000))) -> Tensor:
    """Decode (dx, dy, dw, dh) against anchors (the DeltaXYWH coder, means 0).

    Args:
        anchors: (..., 4) boxes.
        deltas: (..., 4) raw regression outputs; training targets are
            divided by ``stds``, so they are multiplied back here.
    Returns:
        (..., 4) boxes.
    """
    deltas = deltas * deltas.new_tensor(stds)
    dx, dy, dw, dh = deltas.unbind(-1)
    # exp() of a large raw value would overflow: cap the size change.
    dw = dw.clamp(-max_ratio, max_ratio)
    dh = dh.clamp(-max_ratio, max_ratio)
    ax1, ay1, ax2, ay2 = anchors.unbind(-1)
    aw, ah = ax2 - ax1, ay2 - ay1
    cx = (ax1 + ax2) * 0.5 + dx * aw
    cy = (ay1 + ay2) * 0.5 + dy * ah
    w = aw * dw.exp()
    h = ah * dh.exp()
    return torch.stack(
        [cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)


def box_area(boxes: Tensor) -> Tensor:
    """(..., 4) -> (...); inverted boxes have area 0."""
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def _intersection_union(a: Tensor, b: Tensor,
                        eps: float) -> Tuple[Tensor, Tensor]:
    """Areas of the intersection and of the union (at least ``eps``)."""
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) -
          torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter, (box_area(a) + box_area(b) - inter).clamp(min=eps)


def box_iou(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """IoU of boxes (..., 4) and (..., 4) that broadcast -> (...)."""
    inter, union = _intersection_union(a, b, eps)
    return inter / union


def box_giou(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """Generalized IoU of boxes that broadcast, in [-1, 1].

    Widths and heights are clamped at 0, so an inverted box counts as empty
    instead of producing a negative area.
    """
    inter, union = _intersection_union(a, b, eps)
    enclose_wh = (torch.maximum(a[..., 2:], b[..., 2:]) -
                  torch.minimum(a[..., :2], b[..., :2])).clamp(min=0)
    enclose = (enclose_wh[..., 0] * enclose_wh[..., 1]).clamp(min=eps)
    return inter / union - (enclose - union) / enclose


def side_distances(points: Tensor, boxes: Tensor) -> Tensor:
    """(left, top, right, bottom) of points to box sides: (..., 2), (..., 4)
    that broadcast -> (..., 4); negative outside the box."""
    return torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], -1)


def centerness(points: Tensor, boxes: Tensor) -> Tensor:
    """FCOS centerness of points w.r.t. boxes: (..., 2), (..., 4) -> (...).

    sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)); 0 for points
    outside the box.
    """
    d = side_distances(points, boxes).clamp(min=0)
    lr, tb = d[..., 0::2], d[..., 1::2]
    ratio = (lr.min(-1).values / lr.max(-1).values.clamp(min=1e-6)) * (
        tb.min(-1).values / tb.max(-1).values.clamp(min=1e-6))
    return ratio.sqrt()


def points_inside_boxes(points: Tensor, boxes: Tensor,
                        margin: float = 0.01) -> Tensor:
    """Whether each point lies strictly inside its box by more than margin.

    points (..., 2), boxes (..., 4) broadcast against each other -> (...)
    bool.
    """
    return side_distances(points, boxes).min(-1).values > margin
