from .conv_tower import conv_tower, init_tower
from .dcn import ModulatedDeformConv2d, build_conv

__all__ = ['ModulatedDeformConv2d', 'build_conv', 'conv_tower', 'init_tower']
