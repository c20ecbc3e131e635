"""Modulated deformable convolution (DCNv2) on top of ``torchvision.ops``.

mmcv-lite ships no compiled ops, so the deformable convolution comes from
torchvision, which runs on CPU and GPU. Parameter names follow mmcv's
``ModulatedDeformConv2dPack`` so that published MMDetection checkpoints
(``*.conv2.weight``, ``*.conv2.conv_offset.weight`` ...) load unchanged.
"""
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d

from tood.registry import MODELS

IntOrPair = Union[int, Tuple[int, int]]


@MODELS.register_module('DCNv2')
class ModulatedDeformConv2d(nn.Module):
    """DCNv2: a conv whose sampling points and their weights are learned.

    A plain conv (``conv_offset``, zero-initialised so training starts from
    a regular grid) predicts, per output location and kernel tap, a (dy, dx)
    offset and a modulation mask.

    Args:
        in_channels: Input channels C_in.
        out_channels: Output channels C_out.
        kernel_size: Kernel size (kh, kw).
        stride, padding, dilation: As in ``nn.Conv2d``.
        groups: Conv groups (ResNeXt).
        deform_groups: Channel groups that get their own offsets and masks.
        bias: Whether the main conv has a bias.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: IntOrPair,
                 stride: IntOrPair = 1,
                 padding: IntOrPair = 0,
                 dilation: IntOrPair = 1,
                 groups: int = 1,
                 deform_groups: int = 1,
                 bias: bool = True) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f'in_channels ({in_channels}) and out_channels '
                             f'({out_channels}) must be divisible by groups '
                             f'({groups})')
        if in_channels % deform_groups:
            raise ValueError(f'in_channels ({in_channels}) must be divisible '
                             f'by deform_groups ({deform_groups})')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.deform_groups = deform_groups
        # Read by mmcv's ConvModule, which expects nn.Conv2d's attributes.
        self.transposed = False
        self.output_padding = (0, 0)

        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups,
                        *self.kernel_size))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter('bias', None)

        kh, kw = self.kernel_size
        self.conv_offset = nn.Conv2d(
            in_channels,
            deform_groups * 3 * kh * kw,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Conv2d's default init for the main conv, zeros for the offset
        branch (offsets 0, masks sigmoid(0) = 0.5 at the start)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)
        self.init_offset()

    def init_offset(self) -> None:
        """Zero the offset/mask predictor (a regular grid, mask 0.5)."""
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: Tensor) -> Tensor:
        """
        Args:
            x: (N, C_in, H, W).

        Returns:
            (N, C_out, H_out, W_out), same dtype as ``x``.
        """
        out = self.conv_offset(x)
        # Same split as mmcv: the first two thirds are the (dy, dx) offsets in
        # torchvision's/mmcv's layout, the last third the mask logits.
        o1, o2, mask = out.chunk(3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(mask)

        # The sampling kernel is not safe in half precision (and has no bf16
        # CPU kernel), so run it in float32 whatever autocast says.
        with torch.autocast(device_type=x.device.type, enabled=False):
            bias = self.bias.float() if self.bias is not None else None
            y = deform_conv2d(
                x.float(),
                offset.float(),
                self.weight.float(),
                bias,
                stride=self.stride,
                padding=self.padding,
                dilation=self.dilation,
                mask=mask.float())
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        s = (f'{self.in_channels}, {self.out_channels}, '
             f'kernel_size={self.kernel_size}, stride={self.stride}, '
             f'padding={self.padding}, dilation={self.dilation}')
        if self.groups != 1:
            s += f', groups={self.groups}'
        s += (f', deform_groups={self.deform_groups}, '
              f'bias={self.bias is not None}')
        return s


def build_conv(conv_cfg: Optional[dict],
               in_channels: int,
               out_channels: int,
               kernel_size: IntOrPair,
               stride: IntOrPair = 1,
               padding: IntOrPair = 0,
               dilation: IntOrPair = 1,
               groups: int = 1,
               bias: bool = True) -> nn.Module:
    """Build a plain ``nn.Conv2d`` (``conv_cfg=None``) or a DCNv2 layer
    (``conv_cfg=dict(type='DCNv2', deform_groups=g)``)."""
    conv_args = dict(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias)
    if conv_cfg is None:
        return nn.Conv2d(in_channels, out_channels, kernel_size, **conv_args)
    cfg = dict(conv_cfg)
    conv_type = cfg.pop('type')
    if conv_type in ('Conv2d', 'Conv'):
        if cfg:
            raise TypeError(f'Unexpected keys for {conv_type}: {list(cfg)}')
        return nn.Conv2d(in_channels, out_channels, kernel_size, **conv_args)
    if conv_type == 'DCNv2':
        return ModulatedDeformConv2d(in_channels, out_channels, kernel_size,
                                     **conv_args, **cfg)
    raise ValueError(f"Unsupported conv type '{conv_type}'; "
                     "expected None, 'Conv2d' or 'DCNv2'")
