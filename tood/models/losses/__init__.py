from .cross_entropy_loss import CrossEntropyLoss
from .dfl_loss import DistributionFocalLoss
from .focal_loss import FocalLoss, QualityFocalLoss, weight_reduce_loss
from .giou_loss import GIoULoss

__all__ = [
    'FocalLoss', 'QualityFocalLoss', 'GIoULoss', 'weight_reduce_loss',
    'DistributionFocalLoss', 'CrossEntropyLoss'
]
