from .bbox import (aligned_giou, aligned_iou, box_area, centerness,
                   delta2bbox, distance2bbox, points_inside_boxes)
from .det_data_sample import DetDataSample

__all__ = [
    'DetDataSample', 'aligned_giou', 'aligned_iou', 'box_area', 'centerness',
    'delta2bbox', 'distance2bbox', 'points_inside_boxes'
]
