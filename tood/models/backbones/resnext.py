"""ResNeXt backbone (Xie et al., 2017): ResNet with grouped 3x3 convs."""
from tood.registry import MODELS
from .resnet import ResNet


@MODELS.register_module()
class ResNeXt(ResNet):
    """ResNet whose bottleneck 3x3 conv has ``groups`` groups of
    ``base_width`` channels per 64 planes, i.e. its width is
    ``floor(planes * base_width / 64) * groups``.

    ResNeXt-101-64x4d is ``depth=101, groups=64, base_width=4``;
    ResNeXt-50-32x4d is ``depth=50, groups=32, base_width=4``. All other
    arguments are those of :class:`ResNet`; only bottleneck depths
    (50, 101, 152) are valid.
    """

    def __init__(self,
                 depth: int,
                 groups: int = 32,
                 base_width: int = 4,
                 **kwargs) -> None:
        if depth not in (50, 101, 152):
            raise KeyError(f'invalid depth {depth} for ResNeXt; expected '
                           '50, 101 or 152')
        super().__init__(
            depth=depth, groups=groups, base_width=base_width, **kwargs)
