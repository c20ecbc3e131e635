"""The training method of the ATSS baseline (Zhang et al., "Bridging the Gap
Between Anchor-based and Anchor-free Detection via Adaptive Training Sample
Selection", CVPR 2020), with MMDetection 3's losses.

Shapes: B images, K classes, H×W one level, N priors of all levels, P
positives.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from tood.registry import MODELS
from tood.structures import DetDataSample, centerness

from ..losses import global_normaliser
from ..task_modules import levels_to_priors
from .targets import (assign_targets, batch_priors, boxes_in_pixels,
                      build_assigner, check_trains)


class ATSSCriterion(nn.Module):
    """ATSS assignment on the anchors; sigmoid focal loss on all valid
    priors, normalised by the number of positives; GIoU between the
    predicted boxes and their GTs, weighted by the centerness target and
    normalised by its sum; binary cross entropy of the centerness logit
    towards the centerness target, normalised by the number of positives.
    Every normaliser is averaged over processes and clamped to at least 1,
    as in MMDetection. Inference ranks by sqrt(class probability ·
    centerness).

    Args:
        num_classes: K.
        strides: strides of the pyramid levels.
        anchor_scale: anchor side in strides.
        train_cfg: ``assigner``; None for a model that only infers.
        loss_cls: on logits (``activated=False``).
        loss_bbox: on boxes.
        loss_centerness: on centerness logits.
    """

    def __init__(self, num_classes: int, strides: Sequence[int],
                 anchor_scale: float, train_cfg: Optional[dict],
                 loss_cls: dict, loss_bbox: dict,
                 loss_centerness: dict) -> None:
        super().__init__()
        self.num_classes, self.strides = num_classes, tuple(strides)
        self.anchor_scale = anchor_scale
        self.assigner = build_assigner(train_cfg)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_centerness = MODELS.build(loss_centerness)

    def predictions(
        self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
        centernesses: List[Tensor]
    ) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """Per level (B, K, H, W) class probabilities, the (B, 4, H, W)
        boxes and (B, 1, H, W) centerness probabilities, the score
        factor."""
        return ([torch.sigmoid(s.float()) for s in cls_scores], bbox_preds,
                [torch.sigmoid(c.float()) for c in centernesses])

    def forward(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                centernesses: List[Tensor],
                data_samples: List[DetDataSample]) -> Dict[str, Tensor]:
        """``loss_cls``, ``loss_bbox`` and ``loss_centerness`` from per
        level (B, K, H, W) logits, (B, 4, H, W) boxes in stride units and
        (B, 1, H, W) centerness logits."""
        check_trains(self.assigner)
        priors = batch_priors(cls_scores, self.strides, self.anchor_scale,
                              data_samples)
        t = assign_targets(self.assigner, priors, data_samples,
                           self.num_classes)
        fg, valid = t.fg, t.valid  # (B, N)
        logits = levels_to_priors(cls_scores)  # (B, N, K)
        boxes = boxes_in_pixels(bbox_preds, priors)
        ctr_logits = levels_to_priors(centernesses)[..., 0]  # (B, N)

        num_pos = global_normaliser(fg.sum())
        loss_cls = self.loss_cls(
            logits[valid], t.labels[valid], avg_factor=num_pos)
        pos_target = t.boxes[fg]  # (P, 4)
        # Positives lie strictly inside their GT: centerness is defined.
        pos_points = priors.points.expand_as(boxes[..., :2])[fg]
        ctr_target = centerness(pos_points, pos_target)
        # Without positives both are sums over nothing: 0, still in the graph
        # of every parameter (DDP needs their gradients).
        loss_bbox = self.loss_bbox(
            boxes[fg], pos_target, ctr_target,
            avg_factor=global_normaliser(ctr_target.sum()))
        loss_centerness = self.loss_centerness(
            ctr_logits[fg], ctr_target, avg_factor=num_pos)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox,
                    loss_centerness=loss_centerness)
