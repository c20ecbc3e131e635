"""The ground truth of one image, as the metrics read it from a data
sample."""
from typing import Tuple

import numpy as np
import torch


def to_numpy(value) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def sample_ground_truth(
        sample: dict) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes, labels, ignored)`` of a data sample (``to_dict()`` of a
    ``DetDataSample``, as mmengine's evaluator passes it to metrics).

    The dataset record's ``instances``, when ``PackDetInputs`` passes them
    in its ``meta_keys``, are used first: they are always in the original
    image's frame. Otherwise ``gt_instances`` (kept boxes) and
    ``ignored_instances`` (crowd or difficult boxes) are used, which are in
    the original frame when ``LoadAnnotations`` comes after ``Resize`` in
    the test pipeline (as in the shipped configs) or there is no resize.

    Returns:
        boxes: (G, 4) float64 xyxy. labels: (G,) int64. ignored: (G,) bool.
    Raises:
        ValueError: the sample has neither ``instances`` nor
            ``gt_instances``. (A test pipeline without ``LoadAnnotations``
            still packs empty ``gt_instances``, which cannot be told from an
            image without objects: the metrics warn when no image of the
            evaluated set has any ground truth.)
    """
    if 'instances' in sample:
        instances = sample['instances']
        boxes = np.array([i['bbox'] for i in instances],
                         np.float64).reshape(-1, 4)
        labels = np.array([i['bbox_label'] for i in instances], np.int64)
        ignored = np.array([bool(i.get('ignore_flag', 0)) for i in instances],
                           bool)
        return boxes, labels, ignored
    kept = sample.get('gt_instances')
    if kept is None:
        raise ValueError(
            'the metric needs the ground truth in the data samples: load it '
            'with LoadAnnotations in the test pipeline (after Resize, so '
            "that it stays in the original image's frame), or add "
            "'instances' to the meta_keys of PackDetInputs")
    parts = [kept, sample.get('ignored_instances') or {}]
    boxes = [
        to_numpy(p.get('bboxes', np.zeros((0, 4)))).reshape(-1, 4)
        for p in parts
    ]
    labels = [to_numpy(p.get('labels', np.zeros(0))).reshape(-1)
              for p in parts]
    ignored = np.concatenate(
        [np.zeros(len(labels[0]), bool),
         np.ones(len(labels[1]), bool)])
    return (np.concatenate(boxes).astype(np.float64),
            np.concatenate(labels).astype(np.int64), ignored)
