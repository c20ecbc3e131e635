"""Loading transforms: annotations from a dataset record into arrays."""
import numpy as np
from mmcv.transforms import BaseTransform

from tood.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadAnnotations(BaseTransform):
    """Turn ``results['instances']`` into the arrays that transforms update.

    Added keys:
        gt_bboxes: (n, 4) float32 xyxy, in image pixels.
        gt_bboxes_labels: (n,) int64.
        gt_ignore_flags: (n,) bool, True for crowd boxes.

    Args:
        with_bbox: only boxes are supported; the argument exists so that
            MMDetection-style configs (``with_bbox=True``) work unchanged.
    """

    def __init__(self, with_bbox: bool = True) -> None:
        if not with_bbox:
            raise ValueError('LoadAnnotations only loads boxes: '
                             'with_bbox must be True')

    def transform(self, results: dict) -> dict:
        instances = results.get('instances', [])
        results['gt_bboxes'] = np.array(
            [inst['bbox'] for inst in instances],
            dtype=np.float32).reshape(-1, 4)
        results['gt_bboxes_labels'] = np.array(
            [inst['bbox_label'] for inst in instances], dtype=np.int64)
        results['gt_ignore_flags'] = np.array(
            [inst['ignore_flag'] for inst in instances], dtype=bool)
        return results
