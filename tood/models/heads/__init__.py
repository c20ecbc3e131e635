from .atss_head import ATSSHead
from .gfl_head import GFLHead
from .parallel_head import ParallelHead
from .tood_head import TOODHead

__all__ = ['TOODHead', 'ATSSHead', 'GFLHead', 'ParallelHead']
