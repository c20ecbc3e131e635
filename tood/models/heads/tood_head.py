"""The T-Head of TOOD (Sec. 3.1); it trains with Task-aligned Learning
(Sec. 3.2, ``TaskAlignedCriterion``).

Equation numbers refer to Feng et al., "TOOD: Task-aligned One-stage Object
Detection", ICCV 2021 (arXiv 2108.07755). Shapes: B images, C_in input
channels, C feature channels, N interactive layers (``stacked_convs``),
K classes, H×W one pyramid level.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, Scale
from mmengine.model import bias_init_with_prob, normal_init
from torch import Tensor

from tood.errors import check_value
from tood.registry import MODELS

from ..criteria import TaskAlignedCriterion
from ..layers import ModulatedDeformConv2d
from ..task_modules import decode_level
from .dense_head import DenseHead

# Initial classification bias: a prior probability of 0.01 (focal-loss init).
PRIOR_BIAS = bias_init_with_prob(0.01)


def aligned_score(cls_logits: Tensor, prob_logits: Tensor) -> Tensor:
    """Eq. (5): P = sqrt(sigmoid(cls) * sigmoid(M)).

    Computed in log space, so the gradient stays finite where the product
    underflows (a plain sqrt has an infinite derivative at 0).

    (B, K, H, W), (B, 1, H, W) -> (B, K, H, W).
    """
    return torch.exp(0.5 * (F.logsigmoid(cls_logits.float()) +
                            F.logsigmoid(prob_logits.float())))


def sample_box_sides(boxes: Tensor, offsets: Tensor) -> Tensor:
    """Eq. (6): read each box coordinate at its own learned offset.

    Coordinate c of ``boxes`` at (i, j) is taken from (i + O[2c], j +
    O[2c+1]) by bilinear interpolation, zero outside the map. This is a 1×1
    deformable convolution with one group per coordinate and unit weights;
    ``grid_sample`` over one map per coordinate computes the same and, with
    its backward, is 6x faster on the CPU.

    Args:
        boxes: (B, 4, H, W).
        offsets: (B, 8, H, W), (row, column) pairs per coordinate.
    Returns:
        (B, 4, H, W).
    """
    B, _, H, W = boxes.shape
    offsets = offsets.float().reshape(B * 4, 2, H, W)
    y = offsets[:, 0] + torch.arange(H, device=boxes.device)[:, None]
    x = offsets[:, 1] + torch.arange(W, device=boxes.device)  # (B·4, H, W)
    # With align_corners=False, grid_sample puts pixel p at (2p + 1) / size
    # - 1; unlike the align_corners=True form, this holds for a size of 1.
    grid = torch.stack(((2 * x + 1) / W - 1, (2 * y + 1) / H - 1), dim=-1)
    return F.grid_sample(  # bilinear, zero outside the map
        boxes.float().reshape(B * 4, 1, H, W), grid,
        align_corners=False).reshape(B, 4, H, W)


def conv_branch(feat_channels: int, stacked_convs: int,
                out_channels: int) -> nn.Sequential:
    """conv1x1 from the N·C interactive channels to C / 4, ReLU, conv3x3:
    the branches of the probability map M (eq. 7) and the offsets O (eq. 8).
    """
    hidden = feat_channels // 4
    return nn.Sequential(
        nn.Conv2d(feat_channels * stacked_convs, hidden, 1),
        nn.ReLU(inplace=True), nn.Conv2d(hidden, out_channels, 3, padding=1))


class TaskDecomposition(nn.Module):
    """Task-specific features from the interactive ones, eq. (2)-(4).

    Layer attention (eq. 3) gives one weight w_k per interactive layer from
    the pooled interactive features; the task feature is
    ReLU(GN(conv1x1(concat_k w_k · X_k^inter))) (eq. 2, 4). In PyTorch
    the layers are weighted by scaling the 1×1 convolution's weight per
    sample, which is the same product without a copy of the (B, N·C, H, W)
    features (training keeps one fewer tensor for the backward pass). An
    ONNX export takes the written form, features scaled and then the
    convolution: its weight stays a constant, so INT8 quantization makes
    it an int8 convolution with one scale per output channel, where a
    product of two computed tensors (the per-sample weight and the
    features) would run in float32 in OpenVINO (``docs/deployment.md``).
    """

    def __init__(self, feat_channels: int, stacked_convs: int,
                 norm_cfg: Optional[dict], use_layer_attention: bool = True):
        super().__init__()
        self.feat_channels, self.stacked_convs = feat_channels, stacked_convs
        in_channels = feat_channels * stacked_convs
        self.use_layer_attention = use_layer_attention
        if use_layer_attention:
            # Hidden width N·C / (8N) = C / 8.
            hidden = in_channels // (8 * stacked_convs)
            self.layer_attention = nn.Sequential(
                nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True),
                nn.Conv2d(hidden, stacked_convs, 1), nn.Sigmoid())
        self.reduction_conv = ConvModule(
            in_channels, feat_channels, 1, norm_cfg=norm_cfg,
            bias=norm_cfg is None)

    def init_weights(self) -> None:
        if self.use_layer_attention:
            for conv in self.layer_attention[0::2]:  # the two convs
                normal_init(conv, std=0.001)
        normal_init(self.reduction_conv.conv, std=0.01)

    def forward(self, inter_feat: Tensor, avg_feat: Tensor) -> Tensor:
        """(B, N·C, H, W), (B, N·C, 1, 1) -> (B, C, H, W)."""
        if not self.use_layer_attention:
            return self.reduction_conv(inter_feat)
        B, _, H, W = inter_feat.shape
        C, N = self.feat_channels, self.stacked_convs
        w = self.layer_attention(avg_feat)  # (B, N, 1, 1), eq. (3)
        if torch.compiler.is_exporting():
            scaled = inter_feat.reshape(B, N, C, H, W) * w.reshape(
                B, N, 1, 1, 1)
            return self.reduction_conv(scaled.reshape(B, N * C, H, W))
        conv = self.reduction_conv.conv
        weight = (w.reshape(B, 1, N, 1) *
                  conv.weight.reshape(1, C, N, C)).reshape(B, C, N * C)
        feat = torch.bmm(weight, inter_feat.reshape(B, N * C, H * W)).reshape(
            B, C, H, W)
        if conv.bias is not None:
            feat = feat + conv.bias.reshape(1, C, 1, 1)
        if self.reduction_conv.with_norm:
            feat = self.reduction_conv.norm(feat)
        return self.reduction_conv.activate(feat)


@MODELS.register_module()
class TOODHead(DenseHead):
    """Task-aligned head, shared across pyramid levels.

    Args:
        num_classes: K, without background.
        in_channels: C_in of the FPN levels.
        feat_channels: C of the interactive and task features.
        stacked_convs: N interactive conv layers (6 in the paper).
        num_dcn: how many of the first interactive convs are DCNv2.
        anchor_type: ``'anchor_free'`` (distances from the prior point) or
            ``'anchor_based'`` (deltas against one square anchor).
        strides: strides of the pyramid levels, one per FPN output.
        anchor_scale: anchor side in strides; also the ATSS anchor size.
        bbox_coder_stds: stds of the delta coder (anchor-based).
        norm_cfg: norm of the interactive and reduction convs.
        use_layer_attention, use_cls_prob, use_reg_offset: ablation
            switches for layer attention (eq. 3), the probability map M
            (eq. 5, 7) and the offset sampling (eq. 6, 8).
        initial_loss_cls, loss_cls, loss_bbox, train_cfg: Task-aligned
            Learning's, see ``TaskAlignedCriterion``.
        test_cfg: the post-processing's, see ``TestCfg``.
    """

    classifier_name = 'tood_cls'

    def __init__(
            self, num_classes: int, in_channels: int,
            feat_channels: int = 256, stacked_convs: int = 6,
            num_dcn: int = 0, anchor_type: str = 'anchor_free',
            strides: Sequence[int] = (8, 16, 32, 64, 128),
            anchor_scale: float = 8,
            bbox_coder_stds: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
            norm_cfg: Optional[dict] = dict(type='GN', num_groups=32),
            use_layer_attention: bool = True, use_cls_prob: bool = True,
            use_reg_offset: bool = True,
            initial_loss_cls: Optional[dict] = None,
            loss_cls: Optional[dict] = None, loss_bbox: Optional[dict] = None,
            train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
            init_cfg: Optional[dict] = None):
        super().__init__(num_classes, in_channels, feat_channels,
                         stacked_convs, anchor_type, strides, norm_cfg,
                         test_cfg, init_cfg)
        check_value(0 <= num_dcn <= stacked_convs, 'model.bbox_head.num_dcn',
                    f'between 0 and stacked_convs ({stacked_convs})', num_dcn)
        # Layer attention's hidden width is C / 8, the M and O branches'
        # C / 4.
        check_value(feat_channels >= 8, 'model.bbox_head.feat_channels',
                    'at least 8', feat_channels)
        self.anchor_scale, self.bbox_coder_stds = anchor_scale, tuple(
            bbox_coder_stds)
        self.use_cls_prob, self.use_reg_offset = use_cls_prob, use_reg_offset
        # Task-aligned Learning (Sec. 3.2): the losses, and what inference
        # ranks (the aligned scores and boxes as they are).
        self.criterion = TaskAlignedCriterion(
            num_classes, strides, anchor_scale, train_cfg, initial_loss_cls,
            loss_cls, loss_bbox)

        # Eq. (1): N stacked conv-GN-ReLU, each on the previous output.
        self.inter_convs = nn.ModuleList([ConvModule(
            in_channels if i == 0 else feat_channels, feat_channels, 3,
            padding=1, norm_cfg=norm_cfg,
            conv_cfg=dict(type=ModulatedDeformConv2d, deform_groups=4)
            if i < num_dcn else None) for i in range(stacked_convs)])
        args = (feat_channels, stacked_convs, norm_cfg, use_layer_attention)
        self.cls_decomp = TaskDecomposition(*args)
        self.reg_decomp = TaskDecomposition(*args)
        self.tood_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.tood_reg = nn.Conv2d(feat_channels, 4, 3, padding=1)
        if use_cls_prob:  # Eq. (7): M = sigma(conv2(ReLU(conv1(X_inter)))).
            self.cls_prob_module = conv_branch(feat_channels, stacked_convs, 1)
        if use_reg_offset:
            # Eq. (8): O = conv4(ReLU(conv3(X_inter))), 2 offsets per side.
            self.reg_offset_module = conv_branch(feat_channels, stacked_convs,
                                                 4 * 2)
        self.scales = nn.ModuleList([Scale(1.0) for _ in self.strides])

    def init_weights(self) -> None:
        for m in self.inter_convs:
            normal_init(m.conv, std=0.01)
        self.cls_decomp.init_weights()
        self.reg_decomp.init_weights()
        normal_init(self.tood_cls, std=0.01, bias=PRIOR_BIAS)
        normal_init(self.tood_reg, std=0.01)
        if self.use_cls_prob:
            normal_init(self.cls_prob_module[0], std=0.01)
            normal_init(self.cls_prob_module[2], std=0.01, bias=PRIOR_BIAS)
        if self.use_reg_offset:
            normal_init(self.reg_offset_module[0], std=0.001)
            normal_init(self.reg_offset_module[2], std=0.001)

    def forward_single(self, x: Tensor,
                       scale: nn.Module) -> Tuple[Tensor, Tensor]:
        """Run the head on one pyramid level.

        Args:
            x: (B, C_in, H, W).
            scale: the level's learned scale of the box regression.
        Returns:
            cls_score: (B, K, H, W), aligned probabilities P (eq. 5), not
                logits.
            bbox_pred: (B, 4, H, W), boxes (x1, y1, x2, y2) in units of
                the level's stride.
        """
        inter_feats = []
        for conv in self.inter_convs:
            x = conv(x)
            inter_feats.append(x)
        inter_feat = torch.cat(inter_feats, 1)  # (B, N·C, H, W)
        avg_feat = F.adaptive_avg_pool2d(inter_feat, 1)
        cls_feat = self.cls_decomp(inter_feat, avg_feat)
        reg_feat = self.reg_decomp(inter_feat, avg_feat)

        # Classification alignment.
        logits = self.tood_cls(cls_feat)
        cls_score = (aligned_score(logits, self.cls_prob_module(inter_feat))
                     if self.use_cls_prob else logits.float().sigmoid())

        # Localisation: an initial box per location, in stride units, from
        # the distances scale_l · exp(·) or the deltas scale_l · (·).
        raw = self.tood_reg(reg_feat).float()
        boxes = decode_level(
            scale(raw.exp() if self.anchor_type == 'anchor_free' else raw),
            self.anchor_type, self.anchor_scale, self.bbox_coder_stds)

        # Localisation alignment.
        if not self.use_reg_offset:
            return cls_score, boxes
        bbox_pred = sample_box_sides(boxes, self.reg_offset_module(inter_feat))
        # Sampling the sides at different points can invert a box; such a
        # box falls back to the unsampled one so GIoU stays valid.
        inverted = ((bbox_pred[:, 0] > bbox_pred[:, 2]) |
                    (bbox_pred[:, 1] > bbox_pred[:, 3]))[:, None]
        return cls_score, torch.where(inverted, boxes, bbox_pred)
