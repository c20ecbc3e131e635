"""The training method of the GFL baseline (Li et al., "Generalized Focal
Loss: Learning Qualified and Distributed Bounding Boxes for Dense Object
Detection", NeurIPS 2020), with MMDetection 3's losses.

Shapes: B images, K classes, R ``reg_max``, H×W one level, N priors of all
levels, P positives.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from tood.registry import MODELS
from tood.structures import DetDataSample, box_iou, side_distances

from ..losses import global_normaliser
from ..task_modules import levels_to_priors
from .targets import (assign_targets, batch_priors, boxes_in_pixels,
                      build_assigner, check_trains)


class GFLCriterion(nn.Module):
    """ATSS assignment on the anchors; quality focal loss on all valid
    priors towards the IoU of each positive's (detached) predicted box with
    its GT, normalised by the number of positives; GIoU and distribution
    focal loss on the positives, weighted by the prior's highest class
    probability (detached) and normalised by the sum of those weights (DFL
    also by the 4 sides). Every normaliser is averaged over processes and
    clamped to at least 1, as in MMDetection. Inference ranks by the class
    probability (it is trained to be the IoU).

    Args:
        num_classes: K.
        strides: strides of the pyramid levels.
        anchor_scale: side of the ATSS anchors, in strides.
        reg_max: R, the largest distance (in strides) of a side.
        train_cfg: ``assigner``; None for a model that only infers.
        loss_cls: on logits (``activated=False``), with soft IoU targets.
        loss_dfl: distribution focal loss.
        loss_bbox: on boxes.
    """

    def __init__(self, num_classes: int, strides: Sequence[int],
                 anchor_scale: float, reg_max: int,
                 train_cfg: Optional[dict], loss_cls: dict, loss_dfl: dict,
                 loss_bbox: dict) -> None:
        super().__init__()
        self.num_classes, self.strides = num_classes, tuple(strides)
        self.anchor_scale, self.reg_max = anchor_scale, reg_max
        self.assigner = build_assigner(train_cfg)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_dfl = MODELS.build(loss_dfl)
        self.loss_bbox = MODELS.build(loss_bbox)

    def predictions(
        self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
        distributions: List[Tensor]
    ) -> Tuple[List[Tensor], List[Tensor], None]:
        """Per level (B, K, H, W) class probabilities and the (B, 4, H, W)
        boxes; no score factor."""
        return [torch.sigmoid(s.float()) for s in cls_scores], bbox_preds, \
            None

    def forward(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                distributions: List[Tensor],
                data_samples: List[DetDataSample]) -> Dict[str, Tensor]:
        """``loss_cls``, ``loss_bbox`` and ``loss_dfl`` from per level (B,
        K, H, W) logits, (B, 4, H, W) boxes in stride units and (B,
        4·(R+1), H, W) logits of the side distributions."""
        check_trains(self.assigner)
        priors = batch_priors(cls_scores, self.strides, self.anchor_scale,
                              data_samples)
        t = assign_targets(self.assigner, priors, data_samples,
                           self.num_classes)
        fg, valid = t.fg, t.valid  # (B, N)
        logits = levels_to_priors(cls_scores)  # (B, N, K)
        boxes = boxes_in_pixels(bbox_preds, priors)
        pos_pred, pos_target = boxes[fg], t.boxes[fg]  # (P, 4) pixels

        # Quality target: IoU of the predicted box, 0 on negatives.
        quality = torch.zeros_like(fg, dtype=torch.float32)
        quality[fg] = box_iou(pos_pred.detach(), pos_target)
        loss_cls = self.loss_cls(
            logits[valid], (t.labels[valid], quality[valid]),
            avg_factor=global_normaliser(fg.sum()))

        # Box weight: the positive's highest class probability.
        weight = logits.detach().float().sigmoid().max(-1).values[fg]
        box_norm = global_normaliser(weight.sum())
        # Without positives both are sums over nothing: 0, still in the graph
        # of every parameter (DDP needs their gradients).
        loss_bbox = self.loss_bbox(
            pos_pred, pos_target, weight, avg_factor=box_norm)
        # DFL targets: the GT's side distances from the prior point, in
        # strides, kept 0.1 below R as in MMDetection's coder.
        strides = priors.strides[None, :, None].expand_as(boxes)[fg]
        points = priors.points.expand_as(boxes[..., :2])[fg]
        sides = (side_distances(points, pos_target) / strides).clamp(
            0, self.reg_max - 0.1)
        pos_dist = levels_to_priors(distributions)[fg]  # (P, 4·(R+1))
        loss_dfl = self.loss_dfl(
            pos_dist.reshape(-1, self.reg_max + 1),
            sides.reshape(-1),
            weight[:, None].expand(-1, 4).reshape(-1),
            avg_factor=4 * box_norm)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_dfl=loss_dfl)
