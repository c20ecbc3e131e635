"""The detections of a model exported without NMS, in NumPy.

A graph exported with ``with_nms=False`` returns, for one image, per-prior
class probabilities ``scores`` (N, K) and boxes ``boxes`` (N, 4) already in
original-image pixels and clipped, plus ``priors_per_level`` (L,).
``postprocess_numpy`` applies the rest of the detector's inference, as
``tood.models`` does in PyTorch:

1. per level, the (prior, class) pairs with probability > ``score_thr``,
   the best ``nms_pre`` of them;
2. all levels together, class-aware NMS (a box is suppressed by a better
   one of its class when their IoU > ``nms.iou_threshold``);
3. the best ``max_per_img``, best first.

The arithmetic stays in float32, the dtype PyTorch computes the IoUs in,
so a pair of boxes right at the IoU threshold is decided the same way.
"""
from typing import Dict, Sequence, Tuple

import numpy as np


def nms_numpy(boxes: np.ndarray, scores: np.ndarray,
              iou_threshold: float) -> np.ndarray:
    """Greedy NMS of one class.

    Args:
        boxes: (M, 4) x1 y1 x2 y2.
        scores: (M,).
        iou_threshold: a box goes when its IoU with a kept, better box is
            above this.
    Returns:
        Indices of the kept boxes, best first.
    """
    order = np.argsort(-scores, kind='stable')
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        w = np.maximum(
            np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]),
            0)
        h = np.maximum(
            np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]),
            0)
        inter = w * h
        with np.errstate(invalid='ignore', divide='ignore'):
            # NaN (0 / 0, two empty boxes) compares False: neither
            # suppresses the other, as in torchvision.
            iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[~(iou > iou_threshold)]
    return np.asarray(keep, dtype=np.int64)


def postprocess_numpy(scores: np.ndarray, boxes: np.ndarray,
                      priors_per_level: Sequence[int],
                      test_cfg: Dict) -> Tuple[np.ndarray, np.ndarray,
                                                np.ndarray]:
    """Detections of one image from the per-prior outputs.

    Args:
        scores: (N, K) class probabilities.
        boxes: (N, 4) x1 y1 x2 y2, original-image pixels, clipped.
        priors_per_level: (L,) priors of each level, summing to N.
        test_cfg: ``score_thr`` (default 0.05), ``nms_pre`` (1000),
            ``nms.iou_threshold`` (0.6), ``max_per_img`` (100).
    Returns:
        boxes (M, 4) float32, scores (M,) float32, labels (M,) int64, best
        first, M <= ``max_per_img``.
    """
    score_thr = float(test_cfg.get('score_thr', 0.05))
    nms_pre = int(test_cfg.get('nms_pre', 1000))
    iou_thr = float(test_cfg.get('nms', {}).get('iou_threshold', 0.6))
    max_per_img = int(test_cfg.get('max_per_img', 100))
    scores = np.asarray(scores, dtype=np.float32)
    boxes = np.asarray(boxes, dtype=np.float32)
    num_classes = scores.shape[1]
    if int(np.sum(priors_per_level)) != scores.shape[0]:
        raise ValueError(f'priors_per_level sums to '
                         f'{int(np.sum(priors_per_level))}, but there are '
                         f'{scores.shape[0]} priors')

    cand_boxes, cand_scores, cand_labels = [], [], []
    start = 0
    for count in priors_per_level:
        count = int(count)
        # (prior, class) pairs, prior-major.
        flat = scores[start:start + count].reshape(-1)
        keep = np.flatnonzero(flat > score_thr)
        if keep.size > nms_pre:
            keep = keep[np.argsort(-flat[keep], kind='stable')[:nms_pre]]
        cand_scores.append(flat[keep])
        cand_boxes.append(boxes[start + keep // num_classes])
        cand_labels.append(keep % num_classes)
        start += count
    cand_boxes = np.concatenate(cand_boxes).reshape(-1, 4)
    cand_scores = np.concatenate(cand_scores)
    cand_labels = np.concatenate(cand_labels).astype(np.int64)

    kept = [
        np.flatnonzero(cand_labels == label)[nms_numpy(
            cand_boxes[cand_labels == label],
            cand_scores[cand_labels == label], iou_thr)]
        for label in np.unique(cand_labels)
    ]
    kept = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    kept = kept[np.argsort(-cand_scores[kept], kind='stable')][:max_per_img]
    return cand_boxes[kept], cand_scores[kept], cand_labels[kept]
