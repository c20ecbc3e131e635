"""The GFL head (Li et al., "Generalized Focal Loss: Learning Qualified and
Distributed Bounding Boxes for Dense Object Detection", NeurIPS 2020), one
of TOOD's baselines, with MMDetection 3's module names and losses.

Shapes: B images, C_in input channels, C feature channels, K classes, R
``reg_max``, H×W one pyramid level, N priors of all levels.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import Scale
from mmengine.model import bias_init_with_prob, normal_init
from torch import Tensor

from tood.registry import MODELS

from ..criteria import GFLCriterion
from ..layers import ConvTower
from ..task_modules import decode_level
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
    distribution over R + 1 distances, the box its expectation. It trains
    and ranks with ``GFLCriterion`` (ATSS assignment on one square anchor
    per location).

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
        loss_cls, loss_dfl, loss_bbox, train_cfg: the training method's, see
            ``GFLCriterion``.
        test_cfg: the post-processing's, see ``TestCfg``.
    """

    classifier_name = 'gfl_cls'

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
        self.criterion = GFLCriterion(num_classes, strides, anchor_scale,
                                      reg_max, train_cfg, loss_cls, loss_dfl,
                                      loss_bbox)

        self.cls_convs = ConvTower(in_channels, feat_channels, stacked_convs,
                                   norm_cfg)
        self.reg_convs = ConvTower(in_channels, feat_channels, stacked_convs,
                                   norm_cfg)
        self.gfl_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.gfl_reg = nn.Conv2d(
            feat_channels, 4 * (reg_max + 1), 3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in self.strides])
        self.integral = Integral(reg_max)

    def init_weights(self) -> None:
        self.cls_convs.init_weights()
        self.reg_convs.init_weights()
        normal_init(self.gfl_cls, std=0.01, bias=bias_init_with_prob(0.01))
        normal_init(self.gfl_reg, std=0.01)

    def forward_single(self, x: Tensor,
                       scale: nn.Module) -> Tuple[Tensor, Tensor, Tensor]:
        """Run the head on one pyramid level.

        Args:
            x: (B, C_in, H, W).
            scale: the level's learned scale of the box regression.
        Returns:
            cls_score: (B, K, H, W) logits.
            bbox_pred: (B, 4, H, W) boxes x1y1x2y2 in stride units around
                the prior points, from the expected side distances.
            distribution: (B, 4·(R+1), H, W) logits of the distance
                distributions of the sides (left, top, right, bottom),
                R + 1 channels per side.
        """
        dist = scale(self.gfl_reg(self.reg_convs(x))).float()
        sides = self.integral(dist.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return (self.gfl_cls(self.cls_convs(x)),
                decode_level(sides, 'anchor_free'), dist)
