"""Datasets, transforms and samplers of the tood scope."""
import importlib.util

from .coco import COCO_CLASSES, CocoDataset
from .samplers import AspectRatioBatchSampler
from .transforms import *  # noqa: F401,F403

__all__ = ['COCO_CLASSES', 'CocoDataset', 'AspectRatioBatchSampler']

# The procedural dataset is written separately and may not exist yet.
if importlib.util.find_spec(f'{__name__}.shapes') is not None:
    from . import shapes  # noqa: F401
