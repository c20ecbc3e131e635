"""Pascal VOC box AP (the devkit's rules) at one or more IoU thresholds."""
import logging
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from tood.evaluation.ground_truth import sample_ground_truth, to_numpy
from tood.registry import METRICS

EVAL_MODES = ('11points', 'area')


def legacy_iou(boxes: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU with the VOC devkit's inclusive pixel sizes.

    The devkit takes corners as inclusive pixel indices, so a box is
    ``x2 - x1 + 1`` wide; the boxes of ``VOCDataset`` and the detections
    are in that frame shifted by one (see ``tood.datasets.voc.voc_box``),
    which does not change the IoU.

    Args:
        boxes: (N, 4) xyxy.
        gts: (G, 4) xyxy.
    Returns:
        (N, G) IoU.
    """
    boxes = boxes.astype(np.float64)
    gts = gts.astype(np.float64)
    iw = (np.minimum(boxes[:, None, 2], gts[None, :, 2]) -
          np.maximum(boxes[:, None, 0], gts[None, :, 0]) + 1).clip(min=0)
    ih = (np.minimum(boxes[:, None, 3], gts[None, :, 3]) -
          np.maximum(boxes[:, None, 1], gts[None, :, 1]) + 1).clip(min=0)
    inter = iw * ih
    area_b = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    area_g = (gts[:, 2] - gts[:, 0] + 1) * (gts[:, 3] - gts[:, 1] + 1)
    union = area_b[:, None] + area_g[None, :] - inter
    return inter / np.maximum(union, np.finfo(np.float64).eps)


def average_precision(recall: np.ndarray, precision: np.ndarray,
                      eval_mode: str = 'area') -> float:
    """AP of one precision-recall curve.

    Args:
        recall, precision: (D,) after each detection, in score order.
        eval_mode: ``'11points'`` (VOC2007): the mean, over recall
            thresholds 0, 0.1, ..., 1, of the highest precision at a recall
            at least that high (0 where none is). ``'area'`` (VOC2010 and
            later): the area under the curve after each precision is raised
            to the highest precision at any higher recall.
    """
    if eval_mode not in EVAL_MODES:
        raise ValueError(
            f"eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}")
    if eval_mode == '11points':
        total = 0.0
        for threshold in np.linspace(0, 1, 11):
            reached = precision[recall >= threshold]
            total += float(reached.max()) if reached.size else 0.0
        return total / 11
    rec = np.concatenate([[0.0], recall, [1.0]])
    prec = np.concatenate([[0.0], precision, [0.0]])
    # Envelope: the precision at recall r is the best at any recall >= r.
    prec = np.maximum.accumulate(prec[::-1])[::-1]
    steps = np.nonzero(rec[1:] != rec[:-1])[0]
    return float(np.sum((rec[steps + 1] - rec[steps]) * prec[steps + 1]))


def match_class(dets: List[Tuple[int, np.ndarray, np.ndarray]],
                gts: List[Tuple[np.ndarray, np.ndarray]],
                iou_thr: float) -> Tuple[np.ndarray, np.ndarray, int]:
    """True and false positives of one class over all images, as the
    devkit counts them.

    Detections are taken in order of decreasing score (ties keep image
    order). Each is matched to the ground-truth box of its image it
    overlaps most (ignored boxes included); with IoU >= ``iou_thr`` it is
    a true positive if that box is not ignored and not yet taken, a false
    positive if it is taken (a duplicate), and neither if it is ignored
    (VOC's ``difficult``). Below the threshold it is a false positive.

    Args:
        dets: per image ``(image index, (D, 4) boxes, (D,) scores)``.
        gts: per image ``((G, 4) boxes, (G,) bool ignored)``.
        iou_thr: the overlap a hit needs.
    Returns:
        ``(tp, fp, num_pos)``: (D_total,) 0/1 floats in score order (the
        ignored detections removed) and the number of non-ignored boxes.
    """
    num_pos = int(sum((~ignored).sum() for _, ignored in gts))
    # Per detection: its image, score, best ground truth and that IoU (-1:
    # the image has no ground truth of the class), all vectorised per image
    # so that only the bookkeeping of taken boxes is a Python loop.
    owners, scores, best_gt, best_iou = [], [], [], []
    for img_idx, img_boxes, img_scores in dets:
        img_boxes = img_boxes.reshape(-1, 4)
        gt_boxes = gts[img_idx][0]
        owners.append(np.full(len(img_boxes), img_idx))
        scores.append(img_scores.reshape(-1))
        if len(gt_boxes):
            ious = legacy_iou(img_boxes, gt_boxes)
            best_gt.append(ious.argmax(1))
            best_iou.append(ious.max(1))
        else:
            best_gt.append(np.zeros(len(img_boxes), np.int64))
            best_iou.append(np.full(len(img_boxes), -1.0))
    if not owners:
        return np.zeros(0), np.zeros(0), num_pos
    owners = np.concatenate(owners)
    best_gt = np.concatenate(best_gt)
    best_iou = np.concatenate(best_iou)
    order = np.argsort(-np.concatenate(scores), kind='stable')
    taken = [np.zeros(len(ignored), bool) for _, ignored in gts]
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    counted = np.ones(len(order), bool)
    for rank, det in enumerate(order.tolist()):
        img_idx, gt_idx = owners[det], best_gt[det]
        if best_iou[det] < iou_thr:
            fp[rank] = 1
        elif gts[img_idx][1][gt_idx]:
            counted[rank] = False
        elif taken[img_idx][gt_idx]:
            fp[rank] = 1
        else:
            tp[rank] = 1
            taken[img_idx][gt_idx] = True
    return tp[counted], fp[counted], num_pos


def voc_class_ap(tp: np.ndarray, fp: np.ndarray, num_pos: int,
                 eval_mode: str) -> float:
    """AP from :func:`match_class`'s counts; NaN without positives."""
    if num_pos == 0:
        return float('nan')
    tp_sum, fp_sum = np.cumsum(tp), np.cumsum(fp)
    recall = tp_sum / num_pos
    precision = tp_sum / np.maximum(tp_sum + fp_sum,
                                    np.finfo(np.float64).eps)
    return average_precision(recall, precision, eval_mode)


@METRICS.register_module()
class VOCMetric(BaseMetric):
    """Pascal VOC box AP per class and its mean (``mAP``).

    The devkit's rules (see :func:`match_class`): detections sorted by
    score over the whole set, each matched to the ground truth it overlaps
    most with IoU computed on inclusive pixel sizes (``x2 - x1 + 1``, as
    the devkit and MMDetection's ``VOCMetric``), ``difficult`` objects
    (``VOCDataset``'s ignored boxes) neither hits nor misses, duplicates
    false positives. ``eval_mode='11points'`` is VOC2007's interpolation
    and MMDetection's default; ``'area'`` that of VOC2010 and later. A
    class without (non-difficult) ground truth in the evaluated images has
    AP NaN and is left out of the mean, as MMDetection does.

    Ground truth comes from the data samples: the dataset record's
    ``instances`` when ``PackDetInputs`` passes them in its ``meta_keys``,
    else ``gt_instances`` and ``ignored_instances``, which must then be in
    the original image's frame (``LoadAnnotations`` after ``Resize`` in
    the test pipeline, as in the shipped configs). Predictions are in the
    original frame already. Each image counts once: mmengine's
    ``BaseMetric.evaluate`` gathers the results of all processes in
    dataset order and cuts the distributed sampler's padding, and images
    that still come twice (an ``img_id`` seen before) are skipped.

    Args:
        iou_thrs: one threshold or several; each gives ``AP{100 * thr}``
            and ``mAP`` is their mean.
        eval_mode: ``'11points'`` or ``'area'``.
        classwise: also return ``AP{100 * thr}_{class}`` for each class (a
            table of them is always logged).
        metric: only ``'mAP'`` (MMDetection's name).
        collect_device, prefix: as ``mmengine.evaluator.BaseMetric``.

    Returns from ``evaluate``, with the prefix ``pascal_voc/``: ``mAP``,
    ``AP50`` (for ``iou_thrs=0.5``) and the per-class values, in [0, 1].
    """

    default_prefix: Optional[str] = 'pascal_voc'

    def __init__(self,
                 iou_thrs: Union[float, Sequence[float]] = 0.5,
                 eval_mode: str = '11points',
                 classwise: bool = False,
                 metric: Union[str, Sequence[str]] = 'mAP',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        metrics = [metric] if isinstance(metric, str) else list(metric)
        if metrics != ['mAP']:
            raise ValueError(f"only metric='mAP' is supported, got {metric}")
        if eval_mode not in EVAL_MODES:
            raise ValueError(
                f"eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}")
        thrs = [iou_thrs] if isinstance(iou_thrs, (int, float)) else list(
            iou_thrs)
        if not thrs or not all(0 < t <= 1 for t in thrs):
            raise ValueError(f'iou_thrs must be in (0, 1], got {iou_thrs}')
        self.iou_thrs = [float(t) for t in thrs]
        self.eval_mode = eval_mode
        self.classwise = classwise

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Keep each image's ground truth and predictions as numpy arrays."""
        for sample in data_samples:
            pred = sample['pred_instances']
            gt_boxes, gt_labels, gt_ignored = sample_ground_truth(sample)
            self.results.append(
                dict(
                    img_id=sample['img_id'],
                    gt_bboxes=gt_boxes,
                    gt_labels=gt_labels,
                    gt_ignored=gt_ignored,
                    bboxes=to_numpy(pred['bboxes']).reshape(-1, 4),
                    scores=to_numpy(pred['scores']).reshape(-1),
                    labels=to_numpy(pred['labels']).reshape(-1)))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        unique = {}
        for result in results:
            unique.setdefault(result['img_id'], result)
        results = list(unique.values())
        classes = (self.dataset_meta or {}).get('classes')
        num_classes = len(classes) if classes else 1 + max(
            [int(r['gt_labels'].max()) for r in results if r['gt_labels'].size]
            + [int(r['labels'].max()) for r in results if r['labels'].size]
            + [0])
        if classes is None:
            classes = tuple(str(i) for i in range(num_classes))
        for result in results:
            if result['labels'].size and result['labels'].max() >= len(
                    classes):
                raise ValueError(
                    f'label {result["labels"].max()} of image '
                    f'{result["img_id"]} is beyond the {len(classes)} '
                    'classes')

        if not any(r['gt_labels'].size for r in results):
            print_log(
                f'none of the {len(results)} evaluated images has ground '
                'truth: is LoadAnnotations missing from the test pipeline?',
                logger='current',
                level=logging.WARNING)
        metrics: Dict[str, float] = {}
        table: Dict[str, List[float]] = {name: [] for name in classes}
        means = []
        for iou_thr in self.iou_thrs:
            key = f'AP{int(round(iou_thr * 100))}'
            aps = []
            for label in range(len(classes)):
                dets, gts = [], []
                for idx, r in enumerate(results):
                    gt_mask = r['gt_labels'] == label
                    gts.append((r['gt_bboxes'][gt_mask],
                                r['gt_ignored'][gt_mask]))
                    det_mask = r['labels'] == label
                    if det_mask.any():
                        dets.append((idx, r['bboxes'][det_mask],
                                     r['scores'][det_mask]))
                tp, fp, num_pos = match_class(dets, gts, iou_thr)
                aps.append(voc_class_ap(tp, fp, num_pos, self.eval_mode))
            valid = [ap for ap in aps if not math.isnan(ap)]
            mean = float(np.mean(valid)) if valid else 0.0
            means.append(mean)
            metrics[key] = round(mean, 4)
            for name, ap in zip(classes, aps):
                table[name].append(ap)
                if self.classwise:
                    metrics[f'{key}_{name}'] = round(ap, 4)
        metrics = {'mAP': round(float(np.mean(means)), 4), **metrics}
        self._log_table(table, metrics, len(results))
        return metrics

    def _log_table(self, table: Dict[str, List[float]],
                   metrics: Dict[str, float], num_images: int) -> None:
        width = max([len('class')] + [len(name) for name in table])
        head = '  '.join(f'AP{int(round(t * 100)):<4d}' for t in self.iou_thrs)
        lines = [f'{"class":<{width}}  {head}', '-' * (width + len(head) + 2)]
        for name, aps in table.items():
            cells = '  '.join(f'{ap:<6.3f}' for ap in aps)
            lines.append(f'{name:<{width}}  {cells}')
        mean = '  '.join(f'{metrics[f"AP{int(round(t * 100))}"]:<6.3f}'
                         for t in self.iou_thrs)
        lines.append(f'{"mean":<{width}}  {mean}')
        print_log(
            f'VOC AP ({self.eval_mode}) over {num_images} images:\n' +
            '\n'.join(lines),
            logger='current',
            level=logging.INFO)
