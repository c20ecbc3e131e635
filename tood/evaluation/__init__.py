"""Metrics of the tood scope."""
from .coco_metric import CocoMetric
from .voc_metric import VOCMetric

__all__ = ['CocoMetric', 'VOCMetric']
