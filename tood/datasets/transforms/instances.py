"""The ground-truth arrays of a pipeline's results, kept aligned.

``LoadAnnotations`` gives three arrays of one row per box, which the
geometric transforms must cut, clip and join together:

    gt_bboxes: (n, 4) float32 xyxy in the pixels of ``results['img']``
        (continuous coordinates: pixel (i, j) covers [j, j+1) x [i, i+1)).
    gt_bboxes_labels: (n,) int64.
    gt_ignore_flags: (n,) bool.
"""
from typing import Dict, Sequence

import numpy as np

GT_KEYS = ('gt_bboxes', 'gt_bboxes_labels', 'gt_ignore_flags')


def empty_instances() -> Dict[str, np.ndarray]:
    """The three arrays of an image without boxes."""
    return dict(
        gt_bboxes=np.zeros((0, 4), np.float32),
        gt_bboxes_labels=np.zeros(0, np.int64),
        gt_ignore_flags=np.zeros(0, bool))


def get_instances(results: dict) -> Dict[str, np.ndarray]:
    """The three arrays of ``results`` (empty ones where a key is absent,
    e.g. no ``LoadAnnotations``), as arrays of the documented dtypes."""
    instances = empty_instances()
    boxes = results.get('gt_bboxes')
    if boxes is None:
        return instances
    instances['gt_bboxes'] = np.asarray(boxes, np.float32).reshape(-1, 4)
    count = len(instances['gt_bboxes'])
    for key, dtype in (('gt_bboxes_labels', np.int64),
                       ('gt_ignore_flags', bool)):
        values = results.get(key)
        instances[key] = (
            np.zeros(count, dtype) if values is None else np.asarray(
                values, dtype).reshape(-1))
    return instances


def concat_instances(
        parts: Sequence[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """The rows of several ``get_instances`` dicts, in order."""
    joined = empty_instances()
    for key in GT_KEYS:
        joined[key] = np.concatenate([joined[key]] +
                                     [part[key] for part in parts])
    return joined


def clip_and_keep(instances: Dict[str, np.ndarray],
                  region: Sequence[float],
                  clip: bool = True,
                  min_size: float = 0.0) -> Dict[str, np.ndarray]:
    """The instances whose box keeps enough of itself inside ``region``.

    Args:
        instances: as ``get_instances`` returns.
        region: (x1, y1, x2, y2) where the box's pixels are now visible
            (the output image, or the part of it one source image covers).
        clip: store the boxes clipped to ``region``; if False the boxes
            are kept whole (MMDetection's ``bbox_clip_border=False``).
        min_size: a box is kept when the width and the height of its part
            inside ``region`` both exceed this; 0 drops exactly the boxes
            with no area left inside.
    Returns:
        New arrays; a box, its label and its ignore flag stay in one row.
    """
    boxes = instances['gt_bboxes']
    x1, y1, x2, y2 = region
    visible = np.empty_like(boxes)
    visible[:, 0::2] = boxes[:, 0::2].clip(x1, x2)
    visible[:, 1::2] = boxes[:, 1::2].clip(y1, y2)
    keep = ((visible[:, 2] - visible[:, 0] > min_size) &
            (visible[:, 3] - visible[:, 1] > min_size))
    kept = {key: instances[key][keep] for key in GT_KEYS}
    if clip:
        kept['gt_bboxes'] = visible[keep]
    return kept
