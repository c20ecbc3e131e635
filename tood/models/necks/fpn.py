"""Feature Pyramid Network (Lin et al., 2017) with MMDetection's options."""
from typing import List, Optional, Sequence, Tuple, Union

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor

from tood.registry import MODELS


@MODELS.register_module()
class FPN(BaseModule):
    """Top-down pyramid: 1x1 lateral convs, nearest upsampling and addition,
    then a 3x3 conv per level; extra coarser levels on top.

    ``in_channels`` lists every backbone output and ``start_level`` skips
    the first ones, as in MMDetection. For TOOD: ``in_channels=[256, 512,
    1024, 2048], start_level=1, add_extra_convs='on_output', num_outs=5``
    turns C3..C5 into P3..P7, where P6 is a 3x3 stride-2 conv on the P5
    output and P7 one on P6.

    Args:
        in_channels: Channels of each backbone output.
        out_channels: Channels of every pyramid level.
        num_outs: Number of pyramid levels returned.
        start_level: First backbone output used.
        end_level: Last backbone output used (inclusive); -1 for the last.
            With an explicit end level no extra levels are added.
        add_extra_convs: Source of the extra levels' stride-2 3x3 convs:
            False (max-pool the last level instead), 'on_input' (the last
            used backbone output; also what True means), 'on_lateral' (its
            lateral) or 'on_output' (the last pyramid output).
        relu_before_extra_convs: Apply ReLU before each extra conv after
            the first.
        no_norm_on_lateral: Skip ``norm_cfg`` on the lateral convs.
        conv_cfg, norm_cfg, act_cfg: For mmcv's ``ConvModule``; by default
            plain convs with bias, no norm, no activation.
        upsample_cfg: ``F.interpolate`` arguments; without ``scale_factor``
            the coarser map is resized to the finer lateral's size.
        init_cfg: None for Xavier-uniform convs with zero bias, else an
            mmengine init config.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int,
                 num_outs: int,
                 start_level: int = 0,
                 end_level: int = -1,
                 add_extra_convs: Union[bool, str] = False,
                 relu_before_extra_convs: bool = False,
                 no_norm_on_lateral: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None,
                 upsample_cfg: dict = dict(mode='nearest'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_ins = len(in_channels)
        self.num_outs = num_outs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.upsample_cfg = dict(upsample_cfg)

        if end_level == -1 or end_level == self.num_ins - 1:
            self.backbone_end_level = self.num_ins
            if num_outs < self.num_ins - start_level:
                raise ValueError(
                    f'num_outs={num_outs} is smaller than the number of '
                    f'used inputs ({self.num_ins - start_level})')
        else:
            # An explicit end level takes exactly the inputs it names.
            self.backbone_end_level = end_level + 1
            if end_level >= self.num_ins:
                raise ValueError(f'end_level={end_level} is out of range '
                                 f'for {self.num_ins} inputs')
            if num_outs != end_level - start_level + 1:
                raise ValueError('num_outs must equal end_level - '
                                 'start_level + 1 with an explicit end_level')
        self.start_level = start_level
        self.end_level = end_level

        if add_extra_convs is True:
            add_extra_convs = 'on_input'
        if add_extra_convs not in (False, 'on_input', 'on_lateral',
                                   'on_output'):
            raise ValueError(f'invalid add_extra_convs={add_extra_convs!r}')
        self.add_extra_convs = add_extra_convs

        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for i in range(self.start_level, self.backbone_end_level):
            self.lateral_convs.append(
                ConvModule(
                    self.in_channels[i],
                    out_channels,
                    1,
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg if not no_norm_on_lateral else None,
                    act_cfg=act_cfg,
                    inplace=False))
            self.fpn_convs.append(
                ConvModule(
                    out_channels,
                    out_channels,
                    3,
                    padding=1,
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg,
                    inplace=False))

        # Extra levels' convs go after the per-level ones in fpn_convs, as in
        # MMDetection, so its checkpoints load.
        num_extra = num_outs - (self.backbone_end_level - self.start_level)
        if self.add_extra_convs:
            for i in range(num_extra):
                if i == 0 and self.add_extra_convs == 'on_input':
                    extra_in = self.in_channels[self.backbone_end_level - 1]
                else:
                    extra_in = out_channels
                self.fpn_convs.append(
                    ConvModule(
                        extra_in,
                        out_channels,
                        3,
                        stride=2,
                        padding=1,
                        conv_cfg=conv_cfg,
                        norm_cfg=norm_cfg,
                        act_cfg=act_cfg,
                        inplace=False))

        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def init_weights(self) -> None:
        if self.init_cfg is None:
            self._reset_parameters()
            self._is_init = True
        else:
            super().init_weights()

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """
        Args:
            inputs: Backbone features, (N, in_channels[i], H_i, W_i).

        Returns:
            ``num_outs`` maps (N, out_channels, H_l, W_l), finest first.
        """
        if len(inputs) != self.num_ins:
            raise ValueError(f'expected {self.num_ins} inputs, '
                             f'got {len(inputs)}')
        laterals = [
            conv(inputs[i + self.start_level])
            for i, conv in enumerate(self.lateral_convs)
        ]

        # Top-down: add each upsampled coarser level to the finer lateral.
        for i in range(len(laterals) - 1, 0, -1):
            if 'scale_factor' in self.upsample_cfg:
                up = F.interpolate(laterals[i], **self.upsample_cfg)
            else:
                up = F.interpolate(
                    laterals[i],
                    size=laterals[i - 1].shape[2:],
                    **self.upsample_cfg)
            laterals[i - 1] = laterals[i - 1] + up

        num_levels = len(laterals)
        outs: List[Tensor] = [
            self.fpn_convs[i](laterals[i]) for i in range(num_levels)
        ]

        if self.num_outs > num_levels:
            if not self.add_extra_convs:
                for _ in range(self.num_outs - num_levels):
                    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            else:
                if self.add_extra_convs == 'on_input':
                    source = inputs[self.backbone_end_level - 1]
                elif self.add_extra_convs == 'on_lateral':
                    source = laterals[-1]
                else:  # 'on_output'
                    source = outs[-1]
                outs.append(self.fpn_convs[num_levels](source))
                for i in range(num_levels + 1, self.num_outs):
                    prev = outs[-1]
                    if self.relu_before_extra_convs:
                        prev = F.relu(prev)
                    outs.append(self.fpn_convs[i](prev))
        return tuple(outs)
