"""The parallel head of TOOD's head comparison: ATSS's two independent
towers (without the centerness branch) trained and decoded exactly like the
T-Head.

Shapes: B images, C_in input channels, C feature channels, K classes, H×W
one pyramid level.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import Scale
from mmengine.model import BaseModule, normal_init
from torch import Tensor

from tood.registry import MODELS
from tood.structures import delta2bbox, distance2bbox

from .atss_head import conv_tower, init_tower
from .head_utils import setup_task_aligned_training
from .priors import grid_priors, square_anchors
from .tood_head import PRIOR_BIAS, TOODHead


@MODELS.register_module()
class ParallelHead(BaseModule):
    """Classification and regression towers side by side, with TOODHead's
    outputs: class probabilities and boxes in stride units.

    Everything after the forward pass is TOODHead's own code, borrowed
    rather than copied (the methods below read only the attributes set in
    ``__init__``): the ATSS warm-up, task-aligned learning with its losses
    and the inference. So a comparison with the T-Head changes the head
    architecture and nothing else.

    Args:
        num_classes: K, without background.
        in_channels: C_in of the FPN levels.
        feat_channels: C of the towers.
        stacked_convs: convs per tower (4, as in ATSS).
        anchor_type: ``'anchor_free'`` (distances scale_l · exp(·) from
            the prior point) or ``'anchor_based'`` (deltas against one
            square anchor), as in TOODHead.
        strides: strides of the pyramid levels.
        anchor_scale: anchor side in strides; also the ATSS anchor size.
        bbox_coder_stds: stds of the delta coder (anchor-based).
        norm_cfg: norm of the tower convs.
        initial_loss_cls, loss_cls, loss_bbox, train_cfg, test_cfg: as in
            TOODHead (the classification losses take probabilities).
    """

    loss = TOODHead.loss
    loss_by_feat = TOODHead.loss_by_feat
    _flatten = TOODHead._flatten
    predict = TOODHead.predict
    predict_by_feat = TOODHead.predict_by_feat

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 feat_channels: int = 256,
                 stacked_convs: int = 4,
                 anchor_type: str = 'anchor_free',
                 strides: Sequence[int] = (8, 16, 32, 64, 128),
                 anchor_scale: float = 8,
                 bbox_coder_stds: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
                 norm_cfg: Optional[dict] = dict(
                     type='GN', num_groups=32, requires_grad=True),
                 initial_loss_cls: dict = dict(
                     type='FocalLoss', activated=True, gamma=2.0, alpha=0.25,
                     loss_weight=1.0),
                 loss_cls: dict = dict(
                     type='QualityFocalLoss', activated=True, beta=2.0,
                     loss_weight=1.0),
                 loss_bbox: dict = dict(type='GIoULoss', loss_weight=2.0),
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if anchor_type not in ('anchor_free', 'anchor_based'):
            raise ValueError(f'anchor_type must be anchor_free or '
                             f'anchor_based, got {anchor_type!r}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.anchor_type = anchor_type
        self.strides = tuple(strides)
        self.anchor_scale = anchor_scale
        self.bbox_coder_stds = tuple(bbox_coder_stds)
        self.train_cfg = train_cfg or {}
        self.test_cfg = test_cfg or {}
        # The attributes TOODHead.loss_by_feat reads, with its defaults.
        self.epoch = 0
        if self.train_cfg:
            setup_task_aligned_training(self, self.train_cfg)
        self.initial_loss_cls = MODELS.build(initial_loss_cls)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)

        # ATSS's layers and names, without the centerness branch.
        self.cls_convs = conv_tower(in_channels, feat_channels, stacked_convs,
                                    norm_cfg)
        self.reg_convs = conv_tower(in_channels, feat_channels, stacked_convs,
                                    norm_cfg)
        self.atss_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.atss_reg = nn.Conv2d(feat_channels, 4, 3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in self.strides])

    def init_weights(self) -> None:
        init_tower(self.cls_convs)
        init_tower(self.reg_convs)
        normal_init(self.atss_cls, std=0.01, bias=PRIOR_BIAS)
        normal_init(self.atss_reg, std=0.01)

    def forward(self, feats: Sequence[Tensor]) -> Tuple[List[Tensor], ...]:
        """Run the head on every pyramid level.

        Args:
            feats: per level (B, C_in, H, W).
        Returns:
            cls_scores: per level (B, K, H, W) class probabilities.
            bbox_preds: per level (B, 4, H, W), boxes (x1, y1, x2, y2) in
                units of the level's stride.
        """
        cls_scores, bbox_preds = [], []
        for x, scale in zip(feats, self.scales):
            cls_feat, reg_feat = x, x
            for conv in self.cls_convs:
                cls_feat = conv(cls_feat)
            for conv in self.reg_convs:
                reg_feat = conv(reg_feat)
            cls_scores.append(torch.sigmoid(self.atss_cls(cls_feat).float()))
            bbox_preds.append(self._decode(self.atss_reg(reg_feat), scale))
        return cls_scores, bbox_preds

    def _decode(self, raw: Tensor, scale: nn.Module) -> Tensor:
        """(B, 4, H, W) regression output -> (B, 4, H, W) boxes in stride
        units, as the T-Head decodes its initial boxes."""
        B, _, H, W = raw.shape
        points, _ = grid_priors([(H, W)], [1], raw.device)
        raw = raw.float().permute(0, 2, 3, 1).reshape(B, H * W, 4)
        if self.anchor_type == 'anchor_free':
            boxes = distance2bbox(points, scale(raw.exp()))
        else:
            anchors = square_anchors(points, points.new_ones(H * W),
                                     self.anchor_scale)
            boxes = delta2bbox(anchors, scale(raw), self.bbox_coder_stds)
        return boxes.reshape(B, H, W, 4).permute(0, 3, 1, 2).contiguous()
