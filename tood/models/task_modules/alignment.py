"""How aligned a dense head's two tasks are, object by object: the paper's
Fig. 1 and Sec. 4 measured on predictions.

For each ground-truth box g of class c, over its candidates (the priors
whose point lies strictly inside g, the inside test of both assigners):

* the best-score prior (highest score of class c) and the best-IoU prior
  (predicted box with the highest IoU with g); ties go to the first prior;
* ``distance`` between the two priors' points, ``aligned`` when they are
  the same prior, ``top_iou`` (IoU of the top-scored prediction) and
  ``max_iou`` (of the best-localised one);
* ``pearson`` and ``spearman``: correlation of score and IoU over the
  candidates (NaN with fewer than 3 candidates or a constant map).

Computed for every box at once; the validation telemetry
(``tood.engine.hooks.AlignmentHook``) and the analysis tool
(``tools/analysis/alignment.py``) both use it.

Shapes: N priors of all levels, K classes, G ground-truth boxes.
"""
from typing import Dict, List, Sequence

import torch
from torch import Tensor, nn

from tood.structures import DetDataSample, box_iou, points_inside_boxes

from .postprocess import dense_predictions
from .priors import grid_points


def _masked_pearson(x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Per column of (N, G) ``x`` and ``y``, the Pearson correlation over
    the rows ``mask`` selects: (G,), NaN where undefined."""
    x, y, w = x.double(), y.double(), mask.double()
    n = w.sum(0)
    mx, my = (x * w).sum(0) / n, (y * w).sum(0) / n
    dx, dy = (x - mx) * w, (y - my) * w
    cov = (dx * dy).sum(0)
    scale = ((dx * dx).sum(0) * (dy * dy).sum(0)).sqrt()
    defined = (n >= 3) & (scale > 0)
    return torch.where(defined, cov / scale.clamp(min=1e-300),
                       torch.nan).float()


def _ranks(x: Tensor, mask: Tensor) -> Tensor:
    """Per column, the rank of each masked row among the masked rows,
    tied values sharing their average rank (as Spearman's correlation
    needs): (N, G)."""
    values = torch.where(mask, x.double(), torch.inf).t().contiguous()
    ordered = values.sort(1).values  # (G, N)
    below = torch.searchsorted(ordered, values, side='left')
    up_to = torch.searchsorted(ordered, values, side='right')
    return ((below + up_to - 1) / 2).t()


def pearson(x: Tensor, y: Tensor) -> Tensor:
    """Pearson correlation of two (M,) tensors; NaN where undefined."""
    mask = torch.ones_like(x, dtype=torch.bool)[:, None]
    return _masked_pearson(x[:, None], y[:, None], mask)[0]


def spearman(x: Tensor, y: Tensor) -> Tensor:
    """Spearman rank correlation of two (M,) tensors; NaN where
    undefined."""
    mask = torch.ones_like(x, dtype=torch.bool)[:, None]
    return _masked_pearson(_ranks(x[:, None], mask), _ranks(y[:, None], mask),
                           mask)[0]


def alignment_per_gt(scores: Tensor, boxes: Tensor, points: Tensor,
                     gt_bboxes: Tensor,
                     gt_labels: Tensor) -> Dict[str, Tensor]:
    """The alignment of every ground-truth box of one image.

    Args:
        scores: (N, K) the scores detections are ranked by.
        boxes: (N, 4) predicted boxes, in the frame of ``gt_bboxes``.
        points: (N, 2) prior points, in the same frame.
        gt_bboxes: (G, 4); gt_labels: (G,).
    Returns:
        (G,) tensors: ``num_candidates``, ``best_score_index`` and
        ``best_iou_index`` (-1 without candidates), ``distance``,
        ``aligned``, ``top_iou``, ``max_iou``, ``pearson``, ``spearman``
        (NaN where undefined).
    """
    G = gt_bboxes.size(0)
    gt_bboxes = gt_bboxes.float().to(boxes.device)
    ious = box_iou(boxes.float()[:, None], gt_bboxes[None])  # (N, G)
    inside = points_inside_boxes(points[:, None], gt_bboxes[None])
    score = scores.float()[:, gt_labels.to(scores.device)]  # (N, G)
    num = inside.sum(0)
    best_score = torch.where(inside, score, -torch.inf).argmax(0)
    best_iou = torch.where(inside, ious, -torch.inf).argmax(0)
    some = num > 0
    columns = torch.arange(G, device=boxes.device)
    nan = torch.tensor(torch.nan, device=boxes.device)
    return dict(
        num_candidates=num,
        best_score_index=torch.where(some, best_score, -1),
        best_iou_index=torch.where(some, best_iou, -1),
        distance=torch.where(
            some, (points[best_score] - points[best_iou]).norm(dim=-1), nan),
        aligned=some & (best_score == best_iou),
        top_iou=torch.where(some, ious[best_score, columns], nan),
        max_iou=torch.where(some, ious[best_iou, columns], nan),
        pearson=_masked_pearson(score, ious, inside),
        spearman=_masked_pearson(_ranks(score, inside), _ranks(ious, inside),
                                 inside))


def attach_alignment(head: nn.Module, outputs: Sequence[List[Tensor]],
                     data_samples: List[DetDataSample]) -> None:
    """Set ``sample.alignment`` (``alignment_per_gt`` of its ground truth,
    in original-image pixels) on every data sample that has
    ``gt_instances``, from the head's per-level ``outputs`` of the batch.

    The scores are those detections are ranked by
    (``head.criterion.predictions``), the boxes rescaled to the original
    image as the detections are, the prior points likewise; the ground
    truth is in the original frame, as the metrics read it
    (``LoadAnnotations`` after ``Resize`` in the test pipeline).
    """
    cls_scores, bbox_preds, factors = head.criterion.predictions(*outputs)
    device = cls_scores[0].device
    metas = [s.metainfo for s in data_samples]
    scale = torch.tensor([m.get('scale_factor', (1.0, 1.0)) for m in metas],
                         dtype=torch.float32, device=device)
    shape = torch.tensor([m['ori_shape'][:2] for m in metas],
                         dtype=torch.float32, device=device)
    scores, boxes, factors = dense_predictions(
        cls_scores, bbox_preds, head.strides, scale, shape, factors)
    if factors is not None:
        scores = (scores * factors[..., None]).sqrt()
    points, _ = grid_points([s.shape[-2:] for s in cls_scores], head.strides,
                            device)
    for b, sample in enumerate(data_samples):
        gt = sample.get('gt_instances')
        if gt is None:
            continue
        sample.alignment = alignment_per_gt(scores[b], boxes[b],
                                            points / scale[b], gt.bboxes,
                                            gt.labels)
