"""Task-alignment analysis: how far apart are the best prior for
classification and the best prior for localisation? (TOOD, Fig. 1.)

For each ground-truth box g of class c in an image, with the model in eval
mode and its head outputs flattened over all pyramid levels:

* score map s: the aligned score of class c at every prior;
* IoU map u: the IoU of every prior's predicted box (input pixels) with g;
* candidates: the priors whose point lies strictly inside g (by 0.01 px, the
  inside test of both assigners), on every level. Both best priors are
  chosen among them, as in Fig. 1 where the best anchors are those of the
  object: an unrestricted arg-max of s can land on another object of the
  same class, and one of u on a prior far outside g whose box happens to
  fit;
* best-score prior = arg-max of s over the candidates (its box is the
  "top-scored prediction" of g); best-IoU prior = arg-max of u over them
  (ties: the first prior, finest level first, row-major);
* distance: between the two priors' points, in pixels of the network input
  (the resized image); aligned: both are the same prior;
* top_iou: u at the best-score prior; max_iou: u at the best-IoU prior;
* pearson / spearman: correlation of s and u over g's candidates (None
  with fewer than 3 candidates or a constant map). The summary averages
  them over boxes (does ranking g's predictions by score rank them by
  IoU?) and also pools all candidates of all boxes.

The summary averages over the boxes with at least two candidates: with
one, both best priors are that prior, which says nothing about alignment.
Boxes with fewer (smaller than about one stride) are still listed, with
``num_candidates`` telling why they are not counted.
"""
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from tood.models.task_modules import grid_points, levels_to_priors
from tood.models.task_modules.alignment import (alignment_per_gt, pearson,
                                                spearman)
from tood.structures import box_iou, points_inside_boxes

DEFINITIONS = {
    'candidates': 'priors (all levels) whose point lies strictly inside the '
    'ground-truth box (margin 0.01 px)',
    'score': "aligned classification score of the box's class",
    'iou': "IoU of the prior's predicted box with the ground-truth box",
    'best_score': 'candidate with the highest score (its box is the '
    'top-scored prediction)',
    'best_iou': 'candidate whose predicted box has the highest IoU',
    'distance': 'distance between the two priors, input-image pixels',
    'aligned': 'both best priors are the same prior',
    'top_iou': 'IoU of the top-scored prediction',
    'max_iou': 'IoU of the best-localised prediction',
    'pearson/spearman': 'correlation of score and IoU over one box\'s '
    'candidates (mean_*: averaged over boxes; pooled_*: over all '
    'candidates of all boxes)',
    'summary': 'over the boxes with at least 2 candidates',
}
# With a single candidate both best priors are trivially the same.
MIN_CANDIDATES = 2


@dataclass
class FlatOutputs:
    """One image's head outputs, all levels concatenated.

    Attributes:
        scores: (N, K) aligned scores.
        boxes: (N, 4) predicted boxes, input pixels.
        points: (N, 2) prior points (x, y), input pixels.
        strides: (N,) stride of each prior's level.
        levels: (N,) level index of each prior.
        featmap_sizes: (H, W) of each level.
    """
    scores: Tensor
    boxes: Tensor
    points: Tensor
    strides: Tensor
    levels: Tensor
    featmap_sizes: List[Tuple[int, int]]

    def level_map(self, values: Tensor, level: int) -> np.ndarray:
        """(N,) values -> the (H, W) map of one level."""
        start = sum(h * w for h, w in self.featmap_sizes[:level])
        h, w = self.featmap_sizes[level]
        return values[start:start + h * w].reshape(h, w).cpu().numpy()


def flatten_outputs(cls_scores: Sequence[Tensor],
                    bbox_preds: Sequence[Tensor], strides: Sequence[int],
                    index: int = 0) -> FlatOutputs:
    """Image ``index`` of ``model(inputs, mode='tensor')``'s outputs.

    Args:
        cls_scores: per level (B, K, H, W) aligned scores.
        bbox_preds: per level (B, 4, H, W) boxes in stride units.
        strides: the head's strides.
    """
    sizes = [tuple(s.shape[-2:]) for s in cls_scores]
    points, prior_strides = grid_points(sizes, strides, cls_scores[0].device)
    scores = levels_to_priors([s[index:index + 1]
                               for s in cls_scores])[0].float()
    boxes = levels_to_priors([b[index:index + 1] for b in bbox_preds
                              ])[0].float() * prior_strides[:, None]
    levels = torch.cat([
        torch.full((h * w, ), i, dtype=torch.long, device=points.device)
        for i, (h, w) in enumerate(sizes)
    ])
    return FlatOutputs(scores, boxes, points, prior_strides, levels, sizes)


def _prior_record(out: FlatOutputs, index: int, score: Tensor,
                  iou: Tensor) -> dict:
    return dict(
        index=index,
        level=int(out.levels[index]),
        stride=int(out.strides[index]),
        point=[float(v) for v in out.points[index]],
        box=[float(v) for v in out.boxes[index]],
        score=float(score[index]),
        iou=float(iou[index]))


def analyse_image(
        out: FlatOutputs, gt_bboxes: Tensor, gt_labels: Tensor
) -> Tuple[List[dict], List[Optional[np.ndarray]]]:
    """Alignment of every ground-truth box of one image
    (``tood.models.task_modules.alignment.alignment_per_gt``).

    Args:
        out: the image's flattened head outputs.
        gt_bboxes: (G, 4) in input pixels (the frame of ``out.boxes``).
        gt_labels: (G,) class indices.
    Returns:
        One row per box (see the module docstring; ``best_score`` and
        ``best_iou`` describe the two priors), and per box a (2, M) array
        of its M candidates' scores and IoUs (None without candidates).
    """
    gt_bboxes = gt_bboxes.to(out.boxes.device).float()
    found = alignment_per_gt(out.scores, out.boxes, out.points, gt_bboxes,
                             gt_labels)
    ious = box_iou(out.boxes[:, None], gt_bboxes[None])  # (N, G)
    inside = points_inside_boxes(out.points[:, None], gt_bboxes[None])
    rows, pairs = [], []
    for g, label in enumerate(gt_labels.tolist()):
        score, iou = out.scores[:, label], ious[:, g]
        row = dict(
            gt_index=g,
            label=int(label),
            bbox=[float(v) for v in gt_bboxes[g]],
            num_candidates=int(found['num_candidates'][g]))
        candidates = None
        if row['num_candidates']:
            row.update(
                best_score=_prior_record(
                    out, int(found['best_score_index'][g]), score, iou),
                best_iou=_prior_record(out, int(found['best_iou_index'][g]),
                                       score, iou),
                aligned=bool(found['aligned'][g]),
                **{k: _number(found[k][g])
                   for k in ('distance', 'top_iou', 'max_iou', 'pearson',
                             'spearman')})
            mask = inside[:, g]
            candidates = torch.stack([score[mask],
                                      iou[mask]]).double().cpu().numpy()
        rows.append(row)
        pairs.append(candidates)
    return rows, pairs


def _number(value: Tensor) -> Optional[float]:
    """A 0-d tensor as a float, None for NaN (undefined)."""
    value = float(value)
    return None if np.isnan(value) else value


def _mean(values: List[float]) -> Optional[float]:
    return float(np.mean(values)) if values else None


def summarize(rows: List[dict],
              pairs: Optional[List[Optional[np.ndarray]]] = None) -> dict:
    """Averages over the analysed boxes (at least ``MIN_CANDIDATES``).

    ``pairs`` (from :func:`analyse_image`, one per row) give the pooled
    correlations.
    """
    done = [r for r in rows if r['num_candidates'] >= MIN_CANDIDATES]
    correlated = [r for r in done if r['pearson'] is not None]
    summary = dict(
        num_gts=len(rows),
        num_analysed=len(done),
        mean_distance=_mean([r['distance'] for r in done]),
        median_distance=(float(np.median([r['distance'] for r in done]))
                         if done else None),
        fraction_aligned=_mean([float(r['aligned']) for r in done]),
        mean_top_iou=_mean([r['top_iou'] for r in done]),
        mean_max_iou=_mean([r['max_iou'] for r in done]),
        num_correlated=len(correlated),
        mean_pearson=_mean([r['pearson'] for r in correlated]),
        mean_spearman=_mean([r['spearman'] for r in correlated]),
        pooled_pearson=None,
        pooled_spearman=None)
    counted = [
        p for r, p in zip(rows, pairs or [])
        if r['num_candidates'] >= MIN_CANDIDATES
    ]
    if counted:
        pooled = torch.from_numpy(np.concatenate(counted, axis=1))
        summary['pooled_pearson'] = _number(pearson(pooled[0], pooled[1]))
        summary['pooled_spearman'] = _number(spearman(pooled[0], pooled[1]))
    return summary


_COLUMNS = (
    ('boxes', 'num_analysed', '{:d}'),
    ('mean dist. (px)', 'mean_distance', '{:.1f}'),
    ('median dist. (px)', 'median_distance', '{:.1f}'),
    ('aligned', 'fraction_aligned', '{:.3f}'),
    ('IoU of top-scored', 'mean_top_iou', '{:.3f}'),
    ('best IoU', 'mean_max_iou', '{:.3f}'),
    ('Pearson', 'mean_pearson', '{:.3f}'),
    ('Spearman', 'mean_spearman', '{:.3f}'),
    ('pooled Pearson', 'pooled_pearson', '{:.3f}'),
    ('pooled Spearman', 'pooled_spearman', '{:.3f}'),
)


def markdown_table(named_summaries: Sequence[Tuple[str, dict]]) -> str:
    """One row per model; '-' where a value is undefined."""
    lines = [
        '| model | ' + ' | '.join(c[0] for c in _COLUMNS) + ' |',
        '|---|' + '---:|' * len(_COLUMNS),
    ]
    for name, summary in named_summaries:
        cells = []
        for _, key, fmt in _COLUMNS:
            value = summary.get(key)
            cells.append('-' if value is None else fmt.format(value))
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def draw_alignment(image: np.ndarray, out: FlatOutputs, rows: List[dict],
                   path: str, class_names: Optional[Sequence[str]] = None,
                   max_boxes: int = 3) -> None:
    """A figure like the paper's Fig. 1 for the largest analysed boxes.

    One row per box: the image with the box (yellow), the best-score prior
    (red square on its point, its cell dotted, and its predicted box) and
    the best-IoU prior (green); the score map at the best-score prior's
    level; the IoU map at the best-IoU prior's level. Maps are drawn over
    the image, each cell centred on its prior point, colours spanning the
    map's range, in a view of the box with half its size around it.

    Args:
        image: (H, W, 3) uint8 RGB network input (resized, unpadded).
        out: the image's flattened head outputs.
        rows: :func:`analyse_image`'s rows for the image.
        path: the PNG to write.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    def area(r):
        x1, y1, x2, y2 = r['bbox']
        return (x2 - x1) * (y2 - y1)

    shown = sorted((r for r in rows if r['num_candidates'] >= MIN_CANDIDATES),
                   key=area, reverse=True)[:max_boxes]
    if not shown:
        return
    img_h, img_w = image.shape[:2]
    fig, axes = plt.subplots(
        len(shown), 3, figsize=(10.5, 3.6 * len(shown)), squeeze=False)
    for ax_row, row in zip(axes, shown):
        x1, y1, x2, y2 = row['bbox']
        # View: the box with half its size around it, inside the image.
        mx, my = max(x2 - x1, 16) / 2, max(y2 - y1, 16) / 2
        view = (max(x1 - mx, 0), min(x2 + mx, img_w), max(y1 - my, 0),
                min(y2 + my, img_h))
        iou = box_iou(out.boxes, out.boxes.new_tensor(row['bbox']))
        maps = (None, (out.scores[:, row['label']], row['best_score']),
                (iou, row['best_iou']))
        name = (class_names[row['label']]
                if class_names is not None else str(row['label']))
        titles = (f'{name}: dist {row["distance"]:.0f}px, top-scored IoU '
                  f'{row["top_iou"]:.2f}',
                  f'score (level {row["best_score"]["level"]}), '
                  f'max {row["best_score"]["score"]:.2f}',
                  f'IoU (level {row["best_iou"]["level"]}), '
                  f'max {row["best_iou"]["iou"]:.2f}')
        for ax, values, title in zip(ax_row, maps, titles):
            ax.imshow(image, extent=(0, img_w, img_h, 0))
            if values is not None:
                full, prior = values
                level_values = out.level_map(full, prior['level'])
                h, w = level_values.shape
                s = prior['stride']
                shown_map = ax.imshow(
                    level_values, cmap='jet', alpha=0.55,
                    vmin=float(level_values.min()),
                    vmax=float(level_values.max()),
                    extent=(-s / 2, (w - 0.5) * s, (h - 0.5) * s, -s / 2))
                fig.colorbar(shown_map, ax=ax, fraction=0.046, pad=0.02)
            ax.add_patch(
                Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                          edgecolor='yellow', linewidth=2))
            # Red drawn last: where both priors coincide, red shows.
            for key, color in (('best_iou', 'lime'), ('best_score', 'red')):
                prior = row[key]
                px, py = prior['point']
                s = prior['stride']
                ax.add_patch(
                    Rectangle((px - s / 2, py - s / 2), s, s, fill=False,
                              edgecolor=color, linewidth=1, linestyle=':'))
                ax.plot(px, py, 's', color=color, markersize=7,
                        markeredgecolor='white')
                if values is None:
                    bx1, by1, bx2, by2 = prior['box']
                    ax.add_patch(
                        Rectangle((bx1, by1), bx2 - bx1, by2 - by1,
                                  fill=False, edgecolor=color, linewidth=1.5))
            ax.set_xlim(view[0], view[1])
            ax.set_ylim(view[3], view[2])
            ax.set_title(title, fontsize=9)
            ax.axis('off')
    fig.suptitle('red: best-score prior and its box, green: best-IoU prior '
                 'and its box (dotted: their cells), yellow: ground truth',
                 fontsize=9)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.no_grad()
def analyse_dataset(model: torch.nn.Module,
                    dataset,
                    num_images: Optional[int] = None,
                    num_figures: int = 0,
                    figure_dir: Optional[str] = None) -> Tuple[List[dict],
                                                               dict]:
    """Run the model over the first ``num_images`` images of ``dataset``.

    The dataset's pipeline must give ground truth in the network input's
    frame (load the annotations before resizing); the model must be a
    :class:`tood.models.TOOD` in eval mode.

    Returns:
        The rows of all boxes (with ``image_id``, ``img_path``,
        ``class_name``) and their summary.
    """
    from mmengine.dataset import pseudo_collate

    class_names = dataset.metainfo.get('classes')
    strides = model.bbox_head.strides
    count = len(dataset) if num_images is None else min(num_images,
                                                        len(dataset))
    all_rows: List[dict] = []
    all_pairs: List[Optional[np.ndarray]] = []
    for i in range(count):
        item = dataset[i]
        data = model.data_preprocessor(pseudo_collate([item]), False)
        sample = data['data_samples'][0]
        cls_scores, bbox_preds = model(data['inputs'], mode='tensor')
        out = flatten_outputs(cls_scores, bbox_preds, strides)
        rows, pairs = analyse_image(out, sample.gt_instances.bboxes,
                                    sample.gt_instances.labels)
        img_path = sample.metainfo.get('img_path')
        for row in rows:
            row.update(
                image_id=sample.metainfo.get('img_id', i), img_path=img_path)
            if class_names is not None:
                row['class_name'] = class_names[row['label']]
        all_rows += rows
        all_pairs += pairs
        if i < num_figures and figure_dir is not None:
            # The network input before normalisation: (3, H, W) uint8 BGR.
            image = item['inputs'].permute(1, 2, 0).numpy()[..., ::-1]
            stem = (osp.splitext(osp.basename(img_path))[0]
                    if img_path else f'image_{i:06d}')
            draw_alignment(
                np.ascontiguousarray(image), out, rows,
                osp.join(figure_dir, f'{stem}_alignment.png'), class_names)
    summary = dict(num_images=count, **summarize(all_rows, all_pairs))
    return all_rows, summary


def write_json(path: str, payload: Dict) -> None:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(payload, f, indent=1)
