"""tood: a config-driven training toolbox for TOOD (Feng et al., ICCV 2021)."""
__version__ = '0.1.0'
