"""The ATSS head (Zhang et al., "Bridging the Gap Between Anchor-based and
Anchor-free Detection via Adaptive Training Sample Selection", CVPR 2020),
one of TOOD's baselines, with MMDetection 3's module names and losses.

Shapes: B images, C_in input channels, C feature channels, K classes, H×W
one pyramid level, N priors of all levels.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import Scale
from mmengine.model import bias_init_with_prob, normal_init
from mmengine.structures import InstanceData
from torch import Tensor

from tood.errors import build_at
from tood.registry import MODELS, TASK_UTILS
from tood.structures import DetDataSample, PaddedGT, centerness

from ..layers import conv_tower, init_tower
from ..losses import global_normaliser
from ..task_modules import (decode_level, detections_from_levels,
                            levels_to_priors, make_priors)
from .dense_head import DenseHead


@MODELS.register_module()
class ATSSHead(DenseHead):
    """Parallel classification and regression towers with a centerness
    branch on the regression tower; one square anchor per location.

    Training: ATSS assignment on the anchors; sigmoid focal loss on all
    valid priors, normalised by the number of positives; GIoU between the
    decoded boxes and their GTs, weighted by the centerness target and
    normalised by its sum; binary cross entropy of the centerness logit
    towards the centerness target, normalised by the number of positives.
    Inference: sqrt(class probability · centerness), see
    ``detections_from_levels``.

    Args:
        num_classes: K, without background.
        in_channels: C_in of the FPN levels.
        feat_channels: C of the towers.
        stacked_convs: convs per tower.
        strides: strides of the pyramid levels.
        anchor_scale: anchor side in strides (MMDetection's
            ``octave_base_scale`` with one scale per octave).
        bbox_coder_stds: stds of the DeltaXYWH coder (means 0).
        norm_cfg: norm of the tower convs.
        loss_cls: on logits (``activated=False``).
        loss_bbox: on decoded boxes.
        loss_centerness: on centerness logits.
        train_cfg: ``assigner``.
        test_cfg: ``nms_pre``, ``score_thr``, ``nms.iou_threshold``,
            ``max_per_img``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 feat_channels: int = 256,
                 stacked_convs: int = 4,
                 strides: Sequence[int] = (8, 16, 32, 64, 128),
                 anchor_scale: float = 8,
                 bbox_coder_stds: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
                 norm_cfg: Optional[dict] = dict(
                     type='GN', num_groups=32, requires_grad=True),
                 loss_cls: dict = dict(
                     type='FocalLoss', activated=False, gamma=2.0,
                     alpha=0.25, loss_weight=1.0),
                 loss_bbox: dict = dict(type='GIoULoss', loss_weight=2.0),
                 loss_centerness: dict = dict(
                     type='CrossEntropyLoss', use_sigmoid=True,
                     loss_weight=1.0),
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(num_classes, in_channels, feat_channels,
                         stacked_convs, 'anchor_based', strides, norm_cfg,
                         test_cfg, init_cfg)
        self.anchor_scale = anchor_scale
        self.bbox_coder_stds = tuple(bbox_coder_stds)
        if train_cfg:
            self.assigner = build_at(TASK_UTILS, train_cfg['assigner'],
                                     'model.train_cfg.assigner')
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_centerness = MODELS.build(loss_centerness)

        self.cls_convs = conv_tower(in_channels, feat_channels, stacked_convs,
                                    norm_cfg)
        self.reg_convs = conv_tower(in_channels, feat_channels, stacked_convs,
                                    norm_cfg)
        self.atss_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.atss_reg = nn.Conv2d(feat_channels, 4, 3, padding=1)
        self.atss_centerness = nn.Conv2d(feat_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in self.strides])

    def init_weights(self) -> None:
        init_tower(self.cls_convs)
        init_tower(self.reg_convs)
        normal_init(self.atss_cls, std=0.01, bias=bias_init_with_prob(0.01))
        normal_init(self.atss_reg, std=0.01)
        normal_init(self.atss_centerness, std=0.01)

    # ------------------------------------------------------------------ #
    # Forward
    # ------------------------------------------------------------------ #
    def forward_single(self, x: Tensor,
                       scale: nn.Module) -> Tuple[Tensor, Tensor, Tensor]:
        """Run the head on one pyramid level.

        Args:
            x: (B, C_in, H, W).
            scale: the level's learned scale of the box regression.
        Returns:
            cls_score: (B, K, H, W) logits.
            bbox_pred: (B, 4, H, W) deltas (dx, dy, dw, dh) against the
                level's anchors, divided by the coder's stds.
            centerness: (B, 1, H, W) logits.
        """
        reg_feat = self.reg_convs(x)
        return (self.atss_cls(self.cls_convs(x)),
                scale(self.atss_reg(reg_feat)).float(),
                self.atss_centerness(reg_feat))

    def decode(self, bbox_preds: List[Tensor]) -> List[Tensor]:
        """Deltas -> per level (B, 4, H, W) boxes xyxy in stride units."""
        return [decode_level(deltas, 'anchor_based', self.anchor_scale,
                             self.bbox_coder_stds) for deltas in bbox_preds]

    # ------------------------------------------------------------------ #
    # Training
    # ------------------------------------------------------------------ #
    def loss_by_feat(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                     centernesses: List[Tensor],
                     data_samples: List[DetDataSample]) -> dict:
        """``loss_cls``, ``loss_bbox`` and ``loss_centerness`` of a batch.

        Every normaliser is averaged over processes and clamped to at least
        1, as in MMDetection.
        """
        device = cls_scores[0].device
        priors = make_priors([s.shape[-2:] for s in cls_scores], self.strides,
                             self.anchor_scale, data_samples, device)
        gt = PaddedGT.from_samples(data_samples, device)
        assign = self.assigner.assign(priors, gt)
        labels, target_boxes = assign.targets(gt, self.num_classes)
        fg, valid = assign.fg_mask, priors.valid  # (B, N)
        logits = levels_to_priors(cls_scores)  # (B, N, K)
        boxes = levels_to_priors(self.decode(bbox_preds))
        boxes = boxes * priors.strides[:, None]  # pixels
        ctr_logits = levels_to_priors(centernesses)[..., 0]  # (B, N)

        num_pos = global_normaliser(fg.sum())
        loss_cls = self.loss_cls(
            logits[valid], labels[valid], avg_factor=num_pos)

        pos_target = target_boxes[fg]  # (P, 4)
        # Positives lie strictly inside their GT: centerness is defined.
        pos_points = priors.points.expand_as(boxes[..., :2])[fg]
        ctr_target = centerness(pos_points, pos_target)
        # Computed on every process, positives or not (it all-reduces).
        bbox_norm = global_normaliser(ctr_target.sum())
        # Without positives both are sums over nothing: 0, still in the graph
        # of every parameter (DDP needs their gradients).
        loss_bbox = self.loss_bbox(
            boxes[fg], pos_target, ctr_target, avg_factor=bbox_norm)
        loss_centerness = self.loss_centerness(
            ctr_logits[fg], ctr_target, avg_factor=num_pos)
        return dict(
            loss_cls=loss_cls,
            loss_bbox=loss_bbox,
            loss_centerness=loss_centerness)

    # ------------------------------------------------------------------ #
    # Inference
    # ------------------------------------------------------------------ #
    def predict_by_feat(self, cls_scores: List[Tensor],
                        bbox_preds: List[Tensor], centernesses: List[Tensor],
                        batch_img_metas: List[dict],
                        rescale: bool = True) -> List[InstanceData]:
        return detections_from_levels(
            [torch.sigmoid(s.float()) for s in cls_scores],
            self.decode(bbox_preds),
            self.strides,
            batch_img_metas,
            self.test_cfg,
            rescale,
            score_factors=[torch.sigmoid(c.float()) for c in centernesses])
