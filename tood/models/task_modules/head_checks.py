"""Checks every dense head makes on its arguments: at build time, so that a
bad config value stops with its key named; and on its inputs."""
from typing import Optional, Sequence

from torch import Tensor

from tood.errors import check_value


def check_dense_head_args(num_classes: int, in_channels: int,
                          feat_channels: int, stacked_convs: int,
                          anchor_type: str, strides: Sequence[int],
                          norm_cfg: Optional[dict]) -> None:
    """The checks every dense head's arguments pass at build time."""
    for key, value in dict(num_classes=num_classes, in_channels=in_channels,
                           feat_channels=feat_channels,
                           stacked_convs=stacked_convs).items():
        check_value(isinstance(value, int) and value >= 1,
                    f'model.bbox_head.{key}', 'a positive integer', value)
    check_value(anchor_type in ('anchor_free', 'anchor_based'),
                'model.bbox_head.anchor_type', "'anchor_free' or "
                "'anchor_based'", anchor_type)
    check_value(len(strides) >= 1 and all(s > 0 for s in strides),
                'model.bbox_head.strides', 'one positive stride per level',
                strides)
    groups = (norm_cfg or {}).get('num_groups', 1)
    if (norm_cfg or {}).get('type') == 'GN':
        check_value(feat_channels % groups == 0,
                    'model.bbox_head.norm_cfg.num_groups',
                    f'a divisor of feat_channels ({feat_channels})', groups)


def check_num_levels(feats: Sequence[Tensor], strides: Sequence[int]) -> None:
    if len(feats) != len(strides):
        raise ValueError(
            f'The head got {len(feats)} feature maps for {len(strides)} '
            f'strides {tuple(strides)}: model.bbox_head.strides needs one '
            'stride per output of the neck (model.neck.num_outs).')
