"""Where to set the score threshold: precision-recall per class and the
F1-optimal thresholds, from pycocotools' evaluation.

Two things of a ``COCOeval`` after ``accumulate()`` are read, both for the
area range ``all`` and the largest max-detections:

* for the picture, ``eval['precision'][t, r, k]``, the interpolated
  precision at recall ``params.recThrs[r]`` that AP averages (the best
  precision at this recall or beyond; -1 for a class without objects);
* for the thresholds, the matches COCOeval made (``evalImgs``: per image
  and class, each detection's score, its matched object at each IoU
  threshold and whether it is ignored). Keeping the detections that score
  at least c gives, per class and IoU threshold, TP(c) and FP(c), so
  P = TP / (TP + FP), R = TP / objects and F1 = 2PR / (P + R) exactly.
  The interpolated arrays would not do here: ``eval['scores']`` only
  records the score at which each recall point is first reached, so the
  false positives scoring below a class's last recall point, or between
  two points, never count and low thresholds look as good as high ones.

Per class, the threshold is the score of largest F1 (at IoU 0.5, or F1
averaged over IoU 0.5:0.95); overall, the one threshold of largest mean
F1 over the classes that have objects (as ultralytics picks its
confidence). Among equal F1 the higher threshold wins. Classes without
objects, or whose detections match none, get no threshold of their own.

Shapes: T IoU thresholds, R recall points, K classes, D detections of one
class, C candidate thresholds.
"""
import json
import os
import os.path as osp
from typing import Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

# The two settings reported: IoU 0.5 alone, and the mean over COCO's ten.
IOU_SETTINGS = ('0.5', '0.5:0.95')


class Matches(NamedTuple):
    """One class's detections, by falling score, as COCOeval matched them.
    """
    scores: np.ndarray  # (D,)
    tp: np.ndarray  # (T, D) bool: matched, not ignored
    fp: np.ndarray  # (T, D) bool: unmatched, not ignored
    num_objects: int  # objects that count (not crowd / difficult)


def class_matches(coco_eval, k: int) -> Matches:
    """The detections of the k-th evaluated category over all images
    (``evalImgs`` is ordered category, area range, image)."""
    params = coco_eval.params
    I, A = len(params.imgIds), len(params.areaRng)
    entries = [
        e for e in coco_eval.evalImgs[k * A * I:k * A * I + I]
        if e is not None
    ]  # area range 0: 'all'
    T = len(params.iouThrs)
    if not entries:
        return Matches(np.zeros(0), np.zeros((T, 0), bool),
                       np.zeros((T, 0), bool), 0)
    scores = np.concatenate([e['dtScores'] for e in entries])
    # Stable, as COCOeval sorts: equal scores keep the image order.
    order = np.argsort(-scores, kind='mergesort')
    matched = np.concatenate([e['dtMatches'] for e in entries], 1)[:, order]
    ignored = np.concatenate([e['dtIgnore'] for e in entries],
                             1)[:, order].astype(bool)
    objects = int(sum((e['gtIgnore'] == 0).sum() for e in entries))
    return Matches(scores[order], (matched > 0) & ~ignored,
                   (matched == 0) & ~ignored, objects)


def f1_curve(matches: Matches, iou_index: Sequence[int],
             thresholds: np.ndarray) -> Tuple[np.ndarray, np.ndarray,
                                              np.ndarray]:
    """(C,) F1, precision and recall when keeping the detections that
    score at least each threshold, averaged over the IoU thresholds
    ``iou_index``."""
    out = np.zeros((3, len(thresholds)))
    if matches.num_objects == 0:
        return tuple(out)
    # Detections kept at each threshold: those scoring >= it.
    kept = np.searchsorted(-matches.scores, -thresholds, side='right')
    for t in iou_index:
        tp = np.concatenate([[0], np.cumsum(matches.tp[t])])[kept]
        fp = np.concatenate([[0], np.cumsum(matches.fp[t])])[kept]
        p = tp / np.maximum(tp + fp, 1)
        r = tp / matches.num_objects
        f1 = 2 * p * r / np.maximum(p + r, 1e-12)
        out += np.stack([f1, p, r])
    return tuple(out / len(iou_index))


def _candidates(matches: Sequence[Matches]) -> np.ndarray:
    """Every score of a detection that counts (matched or not, not
    ignored), highest first (so that argmax keeps the highest of
    equal-F1 thresholds)."""
    values = [m.scores[(m.tp | m.fp).any(0)] for m in matches]
    values = np.unique(np.concatenate(values)) if values else np.zeros(0)
    return values[::-1]


def operating_points(coco_eval, classes: Sequence[str]) -> dict:
    """The F1-optimal thresholds per class and overall, at IoU 0.5 and
    0.5:0.95 (json-ready).

    Args:
        coco_eval: a ``COCOeval`` after ``evaluate()``, whose categories
            (``params.catIds``) are ``classes`` in order, as
            ``CocoMetric`` evaluates them.
        classes: the class names.
    Returns:
        ``{'0.5': {'classes': {name: {score_thr, f1, precision, recall}
        or None without objects}, 'overall': {score_thr, f1}}, ...}``;
        ``score_thr`` is None where no detection matched an object.
    """
    matches = [class_matches(coco_eval, k) for k in range(len(classes))]
    counted = [m for m in matches if m.num_objects]
    T = len(coco_eval.params.iouThrs)
    result = {}
    for setting in IOU_SETTINGS:
        index = [0] if setting == '0.5' else list(range(T))
        per_class = {}
        for name, m in zip(classes, matches):
            if not m.num_objects:
                per_class[name] = None
                continue
            candidates = _candidates([m])
            f1, p, r = f1_curve(m, index, candidates)
            # No threshold without a matched detection (F1 0 throughout).
            best = int(np.argmax(f1)) if f1.size and f1.max() > 0 else None
            per_class[name] = dict(
                score_thr=None, f1=0.0, precision=0.0,
                recall=0.0) if best is None else dict(
                    score_thr=float(candidates[best]), f1=float(f1[best]),
                    precision=float(p[best]), recall=float(r[best]))
        overall = dict(score_thr=None, f1=0.0)
        candidates = _candidates(counted)
        if len(candidates):
            f1 = np.mean(
                [f1_curve(m, index, candidates)[0] for m in counted], 0)
            best = int(np.argmax(f1))
            if f1[best] > 0:
                overall = dict(score_thr=float(candidates[best]),
                               f1=float(f1[best]))
        result[setting] = dict(classes=per_class, overall=overall)
    return result


def thresholds_for(points: dict, classes: Sequence[str],
                   setting: str = '0.5') -> Dict:
    """What to store with a model: the per-class thresholds of one
    setting, in class order; a class without ground truth (or without a
    detection) takes the overall threshold.

    Returns:
        ``dict(classes=[...], score_thr=[...], overall=float, iou=setting,
        fallback=[names that took the overall threshold])``.
    """
    chosen = points[setting]
    overall = chosen['overall']['score_thr']
    if overall is None:
        raise ValueError('no detection matched any object: there is no '
                         'threshold to choose')
    values, fallback = [], []
    for name in classes:
        row = chosen['classes'].get(name)
        if row is None or row['score_thr'] is None:
            values.append(overall)
            fallback.append(name)
        else:
            values.append(row['score_thr'])
    return dict(classes=list(classes), score_thr=values, overall=overall,
                iou=setting, fallback=fallback)


def format_table(points: dict, classes: Sequence[str]) -> str:
    """The thresholds as a Markdown table, one row per class."""
    lines = [
        '| class | ' + ' | '.join(
            f'score thr @{s} | F1 | P | R @{s}' for s in IOU_SETTINGS) +
        ' |', '| --- |' + ' ---: | ---: | ---: | ---: |' * len(IOU_SETTINGS)
    ]
    for name in classes:
        cells = []
        for setting in IOU_SETTINGS:
            row = points[setting]['classes'].get(name)
            if row is None or row['score_thr'] is None:
                cells += ['-', '-', '-', '-']
            else:
                cells += [f'{row["score_thr"]:.3f}', f'{row["f1"]:.3f}',
                          f'{row["precision"]:.3f}', f'{row["recall"]:.3f}']
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    cells = []
    for setting in IOU_SETTINGS:
        overall = points[setting]['overall']
        thr = overall['score_thr']
        cells += [f'{thr:.3f}' if thr is not None else '-',
                  f'{overall["f1"]:.3f} (mean)', '', '']
    lines.append('| all classes, one threshold | ' + ' | '.join(cells) +
                 ' |')
    return '\n'.join(lines)


def plot_operating_points(coco_eval, classes: Sequence[str], points: dict,
                          out_file: str) -> str:
    """PNG: precision-recall per class at IoU 0.5 and averaged over
    0.5:0.95 (COCO's interpolated curves, as AP averages them), each with
    its F1-optimal point, and F1 against the score threshold at IoU 0.5
    with the per-class and overall choices."""
    from matplotlib.figure import Figure

    precision = coco_eval.eval['precision'][:, :, :, 0, -1]
    recall = np.asarray(coco_eval.params.recThrs)
    fig = Figure(figsize=(16, 5), layout='constrained')
    axes = fig.subplots(1, 3)
    colours = [f'C{k % 10}' for k in range(len(classes))]
    for ax, setting in zip(axes[:2], IOU_SETTINGS):
        index = [0] if setting == '0.5' else slice(None)
        for k, name in enumerate(classes):
            row = points[setting]['classes'].get(name)
            if row is None:
                continue
            curve = precision[index, :, k].clip(min=0).mean(0)
            ax.plot(recall, curve, color=colours[k], label=name)
            if row['score_thr'] is not None:
                ax.plot(row['recall'], row['precision'], 'o',
                        color=colours[k])
        ax.set_title(f'precision-recall, IoU {setting} (dots: best F1)')
        ax.set_xlabel('recall')
        ax.set_ylabel('precision')
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize='small')

    ax = axes[2]
    grid = np.linspace(0.001, 1, 500)[::-1]
    curves: List[np.ndarray] = []
    for k, name in enumerate(classes):
        row = points['0.5']['classes'].get(name)
        if row is None:
            continue
        curves.append(f1_curve(class_matches(coco_eval, k), [0], grid)[0])
        ax.plot(grid, curves[-1], color=colours[k], label=name, lw=1)
        if row['score_thr'] is not None:
            ax.plot(row['score_thr'], row['f1'], 'o', color=colours[k])
    if curves:
        ax.plot(grid, np.mean(curves, 0), color='black', lw=2,
                label='mean')
    overall = points['0.5']['overall']
    if overall['score_thr'] is not None:
        ax.axvline(overall['score_thr'], color='black', ls='--', lw=1)
    ax.set_title('F1 against the score threshold, IoU 0.5')
    ax.set_xlabel('score threshold')
    ax.set_ylabel('F1')
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize='small')
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file, dpi=100)
    return out_file


def write_json(points: dict, out_file: str) -> str:
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    with open(out_file, 'w') as f:
        json.dump(points, f, indent=1)
    return out_file
