from .cross_entropy_loss import CrossEntropyLoss
from .dfl_loss import DistributionFocalLoss
from .focal_loss import FocalLoss, QualityFocalLoss
from .giou_loss import GIoULoss
from .reduction import global_normaliser, weight_reduce_loss

__all__ = [
    'FocalLoss', 'QualityFocalLoss', 'GIoULoss', 'weight_reduce_loss',
    'global_normaliser', 'DistributionFocalLoss', 'CrossEntropyLoss'
]
