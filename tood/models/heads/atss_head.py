"""The ATSS head (Zhang et al., "Bridging the Gap Between Anchor-based and
Anchor-free Detection via Adaptive Training Sample Selection", CVPR 2020),
one of TOOD's baselines, with MMDetection 3's module names and losses.

Shapes: B images, C_in input channels, C feature channels, K classes, H×W
one pyramid level, N priors of all levels.
"""
from typing import Optional, Sequence, Tuple

import torch.nn as nn
from mmcv.cnn import Scale
from mmengine.model import bias_init_with_prob, normal_init
from torch import Tensor

from tood.registry import MODELS

from ..criteria import ATSSCriterion
from ..layers import ConvTower
from ..task_modules import decode_level
from .dense_head import DenseHead


@MODELS.register_module()
class ATSSHead(DenseHead):
    """Parallel classification and regression towers with a centerness
    branch on the regression tower; one square anchor per location. It
    trains and ranks with ``ATSSCriterion``.

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
        loss_cls, loss_bbox, loss_centerness, train_cfg: the training
            method's, see ``ATSSCriterion``.
        test_cfg: the post-processing's, see ``TestCfg``.
    """

    classifier_name = 'atss_cls'

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
        self.criterion = ATSSCriterion(num_classes, strides, anchor_scale,
                                       train_cfg, loss_cls, loss_bbox,
                                       loss_centerness)

        self.cls_convs = ConvTower(in_channels, feat_channels, stacked_convs,
                                   norm_cfg)
        self.reg_convs = ConvTower(in_channels, feat_channels, stacked_convs,
                                   norm_cfg)
        self.atss_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.atss_reg = nn.Conv2d(feat_channels, 4, 3, padding=1)
        self.atss_centerness = nn.Conv2d(feat_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in self.strides])

    def init_weights(self) -> None:
        self.cls_convs.init_weights()
        self.reg_convs.init_weights()
        normal_init(self.atss_cls, std=0.01, bias=bias_init_with_prob(0.01))
        normal_init(self.atss_reg, std=0.01)
        normal_init(self.atss_centerness, std=0.01)

    def forward_single(self, x: Tensor,
                       scale: nn.Module) -> Tuple[Tensor, Tensor, Tensor]:
        """Run the head on one pyramid level.

        Args:
            x: (B, C_in, H, W).
            scale: the level's learned scale of the box regression.
        Returns:
            cls_score: (B, K, H, W) logits.
            bbox_pred: (B, 4, H, W) boxes x1y1x2y2 in stride units, from
                the deltas (dx, dy, dw, dh) against the level's anchors
                (divided by the coder's stds).
            centerness: (B, 1, H, W) logits.
        """
        reg_feat = self.reg_convs(x)
        deltas = scale(self.atss_reg(reg_feat)).float()
        return (self.atss_cls(self.cls_convs(x)),
                decode_level(deltas, 'anchor_based', self.anchor_scale,
                             self.bbox_coder_stds),
                self.atss_centerness(reg_feat))
