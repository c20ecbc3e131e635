from .conv_tower import ConvTower
from .dcn import ModulatedDeformConv2d, build_conv

__all__ = ['ConvTower', 'ModulatedDeformConv2d', 'build_conv']
