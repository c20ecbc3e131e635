"""Datasets, transforms, samplers and data preparers of the tood scope."""
from .base_det_dataset import BaseDetDataset
from .coco import COCO_CLASSES, CocoDataset
from .preparers import DATA_PREPARERS, prepare_data
from .samplers import AspectRatioBatchSampler
from .shapes import ShapesPreparer
from .transforms import *  # noqa: F401,F403
from .voc import VOC_CLASSES, VOCDataset
from .wrappers import pipeline_datasets

__all__ = [
    'BaseDetDataset', 'COCO_CLASSES', 'CocoDataset', 'VOC_CLASSES',
    'VOCDataset', 'AspectRatioBatchSampler', 'DATA_PREPARERS',
    'ShapesPreparer', 'prepare_data', 'pipeline_datasets'
]
