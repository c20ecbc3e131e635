from .dcn import ModulatedDeformConv2d, build_conv

__all__ = ['ModulatedDeformConv2d', 'build_conv']
