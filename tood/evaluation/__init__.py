"""Metrics of the tood scope."""
from .coco_metric import CocoMetric

__all__ = ['CocoMetric']
