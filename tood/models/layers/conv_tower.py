"""The tower of a parallel dense head (ATSS, GFL, the paper's parallel
head): stacked 3×3 conv-norm-ReLU layers."""
from typing import Optional

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import normal_init


class ConvTower(nn.Sequential):
    """``num_convs`` × (3×3 conv, norm, ReLU); ``init_weights`` draws each
    convolution from N(0, 0.01), as MMDetection's heads do.

    Shapes: (B, C_in, H, W) -> (B, C, H, W).
    """

    def __init__(self, in_channels: int, feat_channels: int, num_convs: int,
                 norm_cfg: Optional[dict]) -> None:
        super().__init__(*[
            ConvModule(in_channels if i == 0 else feat_channels,
                       feat_channels, 3, padding=1, norm_cfg=norm_cfg)
            for i in range(num_convs)
        ])

    def init_weights(self) -> None:
        for m in self:
            normal_init(m.conv, std=0.01)
