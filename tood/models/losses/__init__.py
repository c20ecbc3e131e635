from .cross_entropy_loss import CrossEntropyLoss
from .dfl_loss import DistributionFocalLoss
from .focal_loss import FocalLoss, QualityFocalLoss
from .giou_loss import GIoULoss
from .reduction import WeightedLoss, global_normaliser

__all__ = ['FocalLoss', 'QualityFocalLoss', 'GIoULoss', 'WeightedLoss',
           'global_normaliser', 'DistributionFocalLoss', 'CrossEntropyLoss']
