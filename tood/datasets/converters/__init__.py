"""Annotation converters to COCO json (used by tools/dataset_converters)."""
from .voc import voc_class_names, voc_to_coco
from .yolo import read_yolo_names, yolo_to_coco

__all__ = ['voc_class_names', 'voc_to_coco', 'read_yolo_names',
           'yolo_to_coco']
