from .bbox import (box_area, box_giou, box_iou, centerness, delta2bbox,
                   distance2bbox, points_inside_boxes, side_distances)
from .det_data_sample import DetDataSample
from .padded_gt import PaddedGT

__all__ = [
    'DetDataSample', 'PaddedGT', 'box_area', 'box_giou', 'box_iou',
    'centerness', 'delta2bbox', 'distance2bbox', 'points_inside_boxes',
    'side_distances'
]
