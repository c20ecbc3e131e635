"""The parallel head of TOOD's head comparison (Sec. 4.1): ATSS's two
independent towers, without the centerness branch, trained and decoded
exactly like the T-Head.

Shapes: B images, C_in input channels, C feature channels, K classes, H×W
one pyramid level.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import Scale
from mmengine.model import bias_init_with_prob, normal_init
from torch import Tensor

from tood.registry import MODELS

from ..criteria import TaskAlignedCriterion
from ..layers import ConvTower
from ..task_modules import decode_level
from .dense_head import DenseHead


@MODELS.register_module()
class ParallelHead(DenseHead):
    """Classification and regression towers side by side, with the
    T-Head's outputs: class probabilities and boxes in stride units.

    It holds the same ``TaskAlignedCriterion`` and post-processing as the
    T-Head, so a comparison with it changes the head's layers and nothing
    else.

    Args:
        num_classes: K, without background.
        in_channels: C_in of the FPN levels.
        feat_channels: C of the towers.
        stacked_convs: convs per tower (4, as in ATSS).
        anchor_type, strides, anchor_scale, bbox_coder_stds: as in TOODHead.
        norm_cfg: norm of the tower convs.
        initial_loss_cls, loss_cls, loss_bbox, train_cfg, test_cfg: as in
            TOODHead.
    """

    classifier_name = 'atss_cls'

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
                 initial_loss_cls: Optional[dict] = None,
                 loss_cls: Optional[dict] = None,
                 loss_bbox: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(num_classes, in_channels, feat_channels,
                         stacked_convs, anchor_type, strides, norm_cfg,
                         test_cfg, init_cfg)
        self.anchor_scale = anchor_scale
        self.bbox_coder_stds = tuple(bbox_coder_stds)
        self.criterion = TaskAlignedCriterion(
            num_classes, strides, anchor_scale, train_cfg, initial_loss_cls,
            loss_cls, loss_bbox)
        # ATSS's layers and names, without the centerness branch.
        self.cls_convs = ConvTower(in_channels, feat_channels, stacked_convs,
                                   norm_cfg)
        self.reg_convs = ConvTower(in_channels, feat_channels, stacked_convs,
                                   norm_cfg)
        self.atss_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.atss_reg = nn.Conv2d(feat_channels, 4, 3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in self.strides])

    def init_weights(self) -> None:
        self.cls_convs.init_weights()
        self.reg_convs.init_weights()
        normal_init(self.atss_cls, std=0.01, bias=bias_init_with_prob(0.01))
        normal_init(self.atss_reg, std=0.01)

    def forward_single(self, x: Tensor,
                       scale: nn.Module) -> Tuple[Tensor, Tensor]:
        """(B, C_in, H, W) of one level -> (B, K, H, W) class probabilities
        and (B, 4, H, W) boxes x1y1x2y2 in stride units, decoded as the
        T-Head decodes its initial boxes."""
        cls_score = torch.sigmoid(self.atss_cls(self.cls_convs(x)).float())
        raw = self.atss_reg(self.reg_convs(x)).float()
        return cls_score, decode_level(
            scale(raw.exp() if self.anchor_type == 'anchor_free' else raw),
            self.anchor_type, self.anchor_scale, self.bbox_coder_stds)
