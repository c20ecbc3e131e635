"""Confusion matrix of detections against ground truth.

Rows are the ground-truth class (plus ``background`` for detections that
match no object), columns the predicted class (plus ``background`` for
objects no detection found). Detections and objects are matched one to one
per image: detections from the highest score down each take the unmatched
object they overlap most, at IoU >= ``iou_thr`` and whatever the classes,
so a class mix-up shows as an off-diagonal cell rather than as a miss plus
a false positive.
"""
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from tood.structures import box_area, box_iou


def _tensor(values, dtype=torch.float32) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().to(dtype)
    return torch.as_tensor(np.asarray(values), dtype=dtype)


def ground_truth_by_image(dataset) -> Dict[int, dict]:
    """Objects of every image of a dataset, in original-image pixels.

    Args:
        dataset: a ``BaseDataset`` whose records hold ``img_id`` and
            ``instances`` (``bbox``, ``bbox_label``, ``ignore_flag``), e.g.
            ``CocoDataset``.
    Returns:
        ``{img_id: dict(bboxes=(G, 4), labels=(G,), ignored=(I, 4))}``;
        ``ignored`` are crowd boxes.
    """
    gts = {}
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        keep = [i for i in info['instances'] if not i.get('ignore_flag', 0)]
        crowd = [i for i in info['instances'] if i.get('ignore_flag', 0)]
        gts[info['img_id']] = dict(
            bboxes=_tensor([i['bbox'] for i in keep]).reshape(-1, 4),
            labels=_tensor([i['bbox_label'] for i in keep],
                           torch.long).reshape(-1),
            ignored=_tensor([i['bbox'] for i in crowd]).reshape(-1, 4))
    return gts


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(
        value, bool) and math.isfinite(value)


def predictions_from_coco_results(results, source: str,
                                  image_ids: Sequence,
                                  cat_ids: Sequence[int]) -> List[dict]:
    """Detections in COCO's result format (the json ``tools/test.py --out
    results.json`` writes) as the per-image predictions
    :func:`confusion_matrix` takes.

    Args:
        results: the parsed json: a list of ``dict(image_id, bbox=[x, y,
            w, h], score, category_id)``.
        source: the file it came from, for messages.
        image_ids: every image of the test set; one without results gets
            no detections (the json lists detections, not images).
        cat_ids: the category id of each label (``CocoDataset.cat_ids``;
            ``CocoMetric`` without an annotation file writes the labels).
    Returns:
        Per image ``dict(img_id, pred_instances=dict(bboxes (N, 4) xyxy,
        scores (N,), labels (N,)))``: images of ``image_ids`` first, then
        any other image named in ``results``.
    Raises:
        ValueError: naming ``source`` and the entry: not a list of
            results, an entry without a number where one is needed, a
            category id not among ``cat_ids``.
    """
    if not isinstance(results, list):
        raise ValueError(f'{source} is not a list of COCO results (the '
                         'json tools/test.py --out results.json writes)')
    label_of = {cat_id: label for label, cat_id in enumerate(cat_ids)}
    per_image: Dict = {img_id: ([], [], []) for img_id in image_ids}
    for index, entry in enumerate(results):
        where = f'{source}, entry {index}'
        if not isinstance(entry, dict) or not all(
                key in entry
                for key in ('image_id', 'bbox', 'score', 'category_id')):
            raise ValueError(f'{where}: not a dict with image_id, bbox, '
                             'score and category_id')
        bbox = entry['bbox']
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(
                _is_number(v) for v in bbox):
            raise ValueError(f'{where}: bbox must be four numbers '
                             f'[x, y, w, h], got {bbox!r}')
        if not _is_number(entry['score']):
            raise ValueError(f'{where}: score must be a number, got '
                             f'{entry["score"]!r}')
        if entry['category_id'] not in label_of:
            raise ValueError(
                f'{where}: category_id {entry["category_id"]!r} is not '
                f'among the dataset\'s categories {list(cat_ids)}: is it '
                'the config the results were made with?')
        image_id = entry['image_id']
        if not isinstance(image_id, (int, str)):
            raise ValueError(f'{where}: image_id must be a number or a '
                             f'string, got {image_id!r}')
        boxes, scores, labels = per_image.setdefault(image_id, ([], [], []))
        x, y, w, h = bbox
        boxes.append([x, y, x + w, y + h])
        scores.append(entry['score'])
        labels.append(label_of[entry['category_id']])
    return [
        dict(
            img_id=img_id,
            pred_instances=dict(
                bboxes=_tensor(boxes).reshape(-1, 4),
                scores=_tensor(scores).reshape(-1),
                labels=_tensor(labels, torch.long).reshape(-1)))
        for img_id, (boxes, scores, labels) in per_image.items()
    ]


def match_image(pred_bboxes: torch.Tensor,
                pred_scores: torch.Tensor,
                pred_labels: torch.Tensor,
                gt_bboxes: torch.Tensor,
                gt_labels: torch.Tensor,
                num_classes: int,
                ignored_bboxes: Optional[torch.Tensor] = None,
                iou_thr: float = 0.5) -> np.ndarray:
    """Confusion counts of one image, (K + 1, K + 1), index K background.

    Args:
        pred_bboxes: (N, 4) detections kept for the matrix.
        pred_scores: (N,) their scores (matching order).
        pred_labels: (N,).
        gt_bboxes: (G, 4); gt_labels: (G,).
        ignored_bboxes: (I, 4) crowd regions: an unmatched detection that
            lies mostly inside one (intersection / its area >= iou_thr)
            is not counted.
    """
    background = num_classes
    counts = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    matched = torch.zeros(len(gt_bboxes), dtype=torch.bool)
    ious = box_iou(pred_bboxes[:, None],
                   gt_bboxes[None]) if len(gt_bboxes) else None
    unmatched = []
    for i in pred_scores.argsort(descending=True, stable=True).tolist():
        label = int(pred_labels[i])
        if ious is not None:
            overlap = ious[i].masked_fill(matched, -1)
            best = int(overlap.argmax())
            if overlap[best] >= iou_thr:
                matched[best] = True
                counts[int(gt_labels[best]), label] += 1
                continue
        unmatched.append(i)
    if unmatched and ignored_bboxes is not None and len(ignored_bboxes):
        boxes = pred_bboxes[unmatched]
        # Intersection over the detection's own area, as COCOeval does for
        # crowd regions.
        lt = torch.max(boxes[:, None, :2], ignored_bboxes[None, :, :2])
        rb = torch.min(boxes[:, None, 2:], ignored_bboxes[None, :, 2:])
        inter = (rb - lt).clamp(min=0).prod(-1)  # (U, I)
        ioa = inter / box_area(boxes)[:, None].clamp(min=1e-6)
        unmatched = [
            i for i, crowd in zip(unmatched, (ioa >= iou_thr).any(1))
            if not crowd
        ]
    for i in unmatched:
        counts[background, int(pred_labels[i])] += 1
    for label in gt_labels[~matched].tolist():
        counts[label, background] += 1
    return counts


def confusion_matrix(predictions: Sequence[dict],
                     ground_truth: Dict[int, dict],
                     num_classes: int,
                     score_thr: float = 0.3,
                     iou_thr: float = 0.5) -> np.ndarray:
    """Confusion counts over a test set.

    Args:
        predictions: per image a dict with ``img_id`` and
            ``pred_instances`` (``bboxes``, ``scores``, ``labels``), boxes
            in original-image pixels: from
            :func:`predictions_from_coco_results`, or the list
            ``tools/test.py --out x.pkl`` dumps.
        ground_truth: from ``ground_truth_by_image``.
        num_classes: K.
        score_thr: detections below it are left out.
        iou_thr: the overlap that makes a detection find an object.
    Returns:
        (K + 1, K + 1) int64 counts; row = true class, column = predicted
        class, index K = background.
    Raises:
        KeyError: a prediction's image is not in ``ground_truth``.
    """
    counts = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for pred in predictions:
        img_id = pred['img_id']
        if img_id not in ground_truth:
            raise KeyError(f'image {img_id} of the predictions is not in '
                           'the dataset: is it the config they were made '
                           'with?')
        gt = ground_truth[img_id]
        instances = pred['pred_instances']
        scores = _tensor(instances['scores']).reshape(-1)
        keep = scores >= score_thr
        counts += match_image(
            _tensor(instances['bboxes']).reshape(-1, 4)[keep], scores[keep],
            _tensor(instances['labels'], torch.long).reshape(-1)[keep],
            gt['bboxes'], gt['labels'], num_classes, gt['ignored'], iou_thr)
    return counts


def normalize_rows(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows without any count stay 0)."""
    totals = counts.sum(1, keepdims=True)
    return np.divide(
        counts, totals, out=np.zeros(counts.shape), where=totals > 0)


def plot_confusion_matrix(counts: np.ndarray,
                          class_names: Sequence[str],
                          out_file: str,
                          title: str = 'Normalized confusion matrix') -> None:
    """The row-normalised matrix as a PNG, each cell labelled in percent.

    Args:
        counts: (K + 1, K + 1) from ``confusion_matrix``.
        class_names: K names; ``background`` is added.
    """
    from matplotlib.figure import Figure

    names = list(class_names) + ['background']
    if counts.shape != (len(names), len(names)):
        raise ValueError(f'a {counts.shape} matrix for {len(names)} labels')
    matrix = normalize_rows(counts) * 100
    side = max(4.0, 0.55 * len(names) + 2.5)
    fig = Figure(figsize=(side + 1.2, side), layout='constrained')
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap='Blues', vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label='% of row')
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha='right')
    ax.set_yticks(ticks, names)
    ax.set_xlabel('predicted')
    ax.set_ylabel('ground truth')
    ax.set_title(title)
    font = max(5, min(10, 120 // len(names)))
    for row in range(len(names)):
        for col in range(len(names)):
            if counts[row].sum() == 0:
                continue
            value = matrix[row, col]
            ax.text(
                col,
                row,
                f'{value:.0f}',
                ha='center',
                va='center',
                fontsize=font,
                color='white' if value > 50 else 'black')
    folder = osp.dirname(out_file)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(out_file, dpi=100)
