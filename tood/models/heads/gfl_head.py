"""The GFL head (Li et al., "Generalized Focal Loss: Learning Qualified and
Distributed Bounding Boxes for Dense Object Detection", NeurIPS 2020), one
of TOOD's baselines, with MMDetection 3's module names and losses.

Shapes: B images, C_in input channels, C feature channels, K classes, R
``reg_max``, H×W one pyramid level, N priors of all levels.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import Scale
from mmengine.model import bias_init_with_prob, normal_init
from mmengine.structures import InstanceData
from torch import Tensor

from tood.errors import build_at
from tood.registry import MODELS, TASK_UTILS
from tood.structures import DetDataSample, PaddedGT, box_iou, side_distances

from ..layers import conv_tower, init_tower
from ..losses import global_normaliser
from ..task_modules import (decode_level, detections_from_levels,
                            levels_to_priors, make_priors)
from .dense_head import DenseHead


class Integral(nn.Module):
    """General distribution -> distance: the expectation sum_i P(i) · i of
    each side's softmax distribution over the integers 0..R.

    Args:
        reg_max: R, the largest distance (in strides) a bin stands for.
    """

    def __init__(self, reg_max: int = 16) -> None:
        super().__init__()
        self.reg_max = reg_max
        # Saved with the weights, as in MMDetection, so their checkpoints
        # load strictly.
        self.register_buffer('project',
                             torch.linspace(0, reg_max, reg_max + 1))

    def forward(self, x: Tensor) -> Tensor:
        """(..., 4·(R+1)) logits, side after side -> (..., 4) distances."""
        x = x.float().reshape(*x.shape[:-1], 4, self.reg_max + 1)
        return F.softmax(x, -1) @ self.project


@MODELS.register_module()
class GFLHead(DenseHead):
    """Parallel classification and regression towers; each box side is a
    distribution over R + 1 distances; ATSS assignment on one square anchor
    per location.

    Training: quality focal loss on all valid priors towards the IoU of
    each positive's (detached) predicted box with its GT, normalised by the
    number of positives; GIoU and distribution focal loss on the positives,
    weighted by the prior's highest class probability (detached) and
    normalised by the sum of those weights (DFL also by the 4 sides).
    Inference: the class probability is the score (it is trained to be the
    IoU).

    Args:
        num_classes: K, without background.
        in_channels: C_in of the FPN levels.
        feat_channels: C of the towers.
        stacked_convs: convs per tower.
        strides: strides of the pyramid levels.
        anchor_scale: side of the ATSS anchors, in strides.
        reg_max: R; distances are in strides, so a side reaches at most
            R strides from the prior point.
        norm_cfg: norm of the tower convs.
        loss_cls: on logits (``activated=False``), with soft IoU targets.
        loss_dfl: distribution focal loss.
        loss_bbox: on decoded boxes.
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
                 reg_max: int = 16,
                 norm_cfg: Optional[dict] = dict(
                     type='GN', num_groups=32, requires_grad=True),
                 loss_cls: dict = dict(
                     type='QualityFocalLoss', activated=False, beta=2.0,
                     loss_weight=1.0),
                 loss_dfl: dict = dict(
                     type='DistributionFocalLoss', loss_weight=0.25),
                 loss_bbox: dict = dict(type='GIoULoss', loss_weight=2.0),
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(num_classes, in_channels, feat_channels,
                         stacked_convs, 'anchor_free', strides, norm_cfg,
                         test_cfg, init_cfg)
        self.anchor_scale = anchor_scale
        self.reg_max = reg_max
        if train_cfg:
            self.assigner = build_at(TASK_UTILS, train_cfg['assigner'],
                                     'model.train_cfg.assigner')
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_dfl = MODELS.build(loss_dfl)
        self.loss_bbox = MODELS.build(loss_bbox)

        self.cls_convs = conv_tower(in_channels, feat_channels, stacked_convs,
                                    norm_cfg)
        self.reg_convs = conv_tower(in_channels, feat_channels, stacked_convs,
                                    norm_cfg)
        self.gfl_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.gfl_reg = nn.Conv2d(
            feat_channels, 4 * (reg_max + 1), 3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in self.strides])
        self.integral = Integral(reg_max)

    def init_weights(self) -> None:
        init_tower(self.cls_convs)
        init_tower(self.reg_convs)
        normal_init(self.gfl_cls, std=0.01, bias=bias_init_with_prob(0.01))
        normal_init(self.gfl_reg, std=0.01)

    # ------------------------------------------------------------------ #
    # Forward
    # ------------------------------------------------------------------ #
    def forward_single(self, x: Tensor,
                       scale: nn.Module) -> Tuple[Tensor, Tensor]:
        """Run the head on one pyramid level.

        Args:
            x: (B, C_in, H, W).
            scale: the level's learned scale of the box regression.
        Returns:
            cls_score: (B, K, H, W) logits.
            bbox_pred: (B, 4·(R+1), H, W) logits of the distance
                distributions of the sides (left, top, right, bottom),
                R + 1 channels per side.
        """
        return (self.gfl_cls(self.cls_convs(x)),
                scale(self.gfl_reg(self.reg_convs(x))).float())

    def decode(self, bbox_preds: List[Tensor]) -> List[Tensor]:
        """Distributions -> per level (B, 4, H, W) boxes xyxy in stride
        units around the prior points."""
        return [
            decode_level(
                self.integral(pred.permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
                'anchor_free') for pred in bbox_preds
        ]

    # ------------------------------------------------------------------ #
    # Training
    # ------------------------------------------------------------------ #
    def loss_by_feat(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                     data_samples: List[DetDataSample]) -> dict:
        """``loss_cls``, ``loss_bbox`` and ``loss_dfl`` of a batch.

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
        strides = priors.strides[None, :, None]
        boxes = levels_to_priors(self.decode(bbox_preds)) * strides
        pos_pred = boxes[fg]  # (P, 4), pixels
        pos_target = target_boxes[fg]

        # Quality target: IoU of the predicted box, 0 on negatives.
        quality = torch.zeros_like(fg, dtype=torch.float32)
        quality[fg] = box_iou(pos_pred.detach(), pos_target)
        num_pos = global_normaliser(fg.sum())
        loss_cls = self.loss_cls(
            logits[valid], (labels[valid], quality[valid]),
            avg_factor=num_pos)

        # Box weight: the positive's highest class probability.
        weight = logits.detach().float().sigmoid().max(-1).values[fg]
        box_norm = global_normaliser(weight.sum())
        # Without positives both are sums over nothing: 0, still in the graph
        # of every parameter (DDP needs their gradients).
        loss_bbox = self.loss_bbox(
            pos_pred, pos_target, weight, avg_factor=box_norm)
        # DFL targets: the GT's side distances from the prior point, in
        # strides, kept 0.1 below R as in MMDetection's coder.
        points = priors.points.expand_as(boxes[..., :2])[fg]
        sides = side_distances(points, pos_target)
        sides = (sides / strides.expand_as(boxes)[fg]).clamp(
            0, self.reg_max - 0.1)
        pos_dist = levels_to_priors(bbox_preds)[fg]  # (P, 4·(R+1))
        loss_dfl = self.loss_dfl(
            pos_dist.reshape(-1, self.reg_max + 1),
            sides.reshape(-1),
            weight[:, None].expand(-1, 4).reshape(-1),
            avg_factor=4 * box_norm)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_dfl=loss_dfl)

    # ------------------------------------------------------------------ #
    # Inference
    # ------------------------------------------------------------------ #
    def predict_by_feat(self, cls_scores: List[Tensor],
                        bbox_preds: List[Tensor], batch_img_metas: List[dict],
                        rescale: bool = True) -> List[InstanceData]:
        return detections_from_levels(
            [torch.sigmoid(s.float()) for s in cls_scores],
            self.decode(bbox_preds), self.strides, batch_img_metas,
            self.test_cfg, rescale)
