"""Adaptive Training Sample Selection (Zhang et al., CVPR 2020).

TOOD uses it on the anchor boxes for its warm-up epochs. Shapes: B images,
N priors of all levels, G padded GT slots, k candidates per GT (topk per
level, levels concatenated). The candidate search runs image by image over
cache-sized chunks of GTs, so its memory does not grow with G times N.
"""
from typing import Optional

import torch
from torch import Tensor

from tood.errors import check_value
from tood.registry import TASK_UTILS
from tood.structures import PaddedGT, box_iou, points_inside_boxes

from ..priors import Priors
from ._dense import nearest_priors
from .assign_result import AssignResult, resolve_claims


@TASK_UTILS.register_module()
class ATSSAssigner:
    """Assign priors to GTs with an IoU threshold adapted to each GT.

    For every GT: per pyramid level, the ``topk`` valid priors whose anchor
    centres are nearest the GT centre are candidates; the threshold is the
    mean plus the unbiased standard deviation of the candidates' anchor
    IoUs; a candidate is positive if its IoU reaches the threshold and its
    anchor centre lies strictly inside the GT. A prior claimed by several
    GTs goes to the one with the highest IoU (ties: lowest GT index).

    Args:
        topk: candidates per level and GT.
    """

    def __init__(self, topk: int = 9) -> None:
        check_value(isinstance(topk, int) and topk >= 1, 'topk',
                    'a positive integer', topk)
        self.topk = topk

    @torch.no_grad()
    def assign(self, priors: Priors, gt: PaddedGT,
               pred_scores: Optional[Tensor] = None,
               pred_bboxes: Optional[Tensor] = None) -> AssignResult:
        """Assign the priors of a batch on their anchors (``priors.anchors``,
        ``level_sizes``, ``valid``); the predictions are not used.

        Returns:
            AssignResult with ``metrics`` equal to ``overlaps``, the anchor
            IoU.
        """
        anchors = priors.anchors
        (B, G), N = gt.labels.shape, anchors.size(0)
        anchor_centres = (anchors[:, :2] + anchors[:, 2:]) * 0.5
        gt_centres = (gt.bboxes[..., :2] + gt.bboxes[..., 2:]) * 0.5
        # Candidates: per level the nearest valid priors, image by image;
        # padded GT slots keep no valid candidate.
        level_priors = [h * w for h, w in priors.level_sizes]
        k = sum(min(self.topk, n) for n in level_priors)
        cand_idx = gt.labels.new_zeros((B, G, k))
        cand_valid = gt.valid.new_zeros((B, G, k))
        for b, slots in gt.slots_per_image():
            cand_idx[b, slots], cand_valid[b, slots] = nearest_priors(
                anchor_centres, level_priors, gt_centres[b, slots],
                priors.valid[b], self.topk)
        gt_boxes = gt.bboxes[:, :, None, :]
        ious = box_iou(anchors[cand_idx], gt_boxes)  # (B, G, k)
        # Mean and unbiased std over each GT's valid candidates. With a
        # single candidate the std is taken as 0 (torch.std would give NaN
        # and silently drop the GT).
        weight = cand_valid.to(ious.dtype)
        count = weight.sum(-1, keepdim=True)
        mean = (ious * weight).sum(-1, keepdim=True) / count.clamp(min=1)
        var = ((ious - mean).square() * weight).sum(
            -1, keepdim=True) / (count - 1).clamp(min=1)
        inside = points_inside_boxes(anchor_centres[cand_idx], gt_boxes)
        positive = cand_valid & (ious >= mean + var.sqrt()) & inside
        gt_index, _, best_iou = resolve_claims(positive, ious, cand_idx, N)
        overlaps = torch.where(gt_index >= 0, best_iou, 0.0)
        return AssignResult(gt_index, gt_index >= 0, overlaps,
                            overlaps.clone())
