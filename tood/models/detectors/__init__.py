from .tood import TOOD

__all__ = ['TOOD']
