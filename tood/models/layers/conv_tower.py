"""The towers of a parallel dense head (ATSS, GFL, the paper's parallel
head): stacked 3×3 conv-norm-ReLU layers."""
from typing import Optional

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import normal_init


def conv_tower(in_channels: int, feat_channels: int, num_convs: int,
               norm_cfg: Optional[dict]) -> nn.Sequential:
    """``num_convs`` × (3×3 conv, norm, ReLU), each convolution initialised
    N(0, 0.01) by :func:`init_tower`."""
    return nn.Sequential(*[
        ConvModule(
            in_channels if i == 0 else feat_channels,
            feat_channels,
            3,
            padding=1,
            norm_cfg=norm_cfg) for i in range(num_convs)
    ])


def init_tower(tower: nn.Sequential) -> None:
    for m in tower:
        normal_init(m.conv, std=0.01)
