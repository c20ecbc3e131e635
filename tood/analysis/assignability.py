"""Can the head's priors reach each ground-truth box? The assignability
audit behind ``tools/analysis/assignability.py``.

A GT is trained only through the priors that become positive for it, and
both of TOOD's assigners demand that a positive prior's point lies inside
the box (``tood.structures.points_inside_boxes``):

* **TAL** (``TaskAlignedAssigner``) keeps, of the top-k priors by
  alignment, those whose point is inside the GT. Its *candidates* here are
  all the priors inside the box: an upper bound on its positives, which
  depend on the predictions;
* **ATSS** (``ATSSAssigner``, the warm-up) depends only on the anchors, so
  it is run as it is, image by image: its positives per GT, with priors
  claimed by several GTs settled by its own rule.

Prior points sit on the corners of the cells, (j·s, i·s) at stride s, so a
box narrower than the finest stride contains none unless it straddles a
multiple of the stride in both directions. The levels' grids are nested
(every point of stride 2s is one of stride s), so a GT without a candidate
on the finest level has none on any level.

Boxes are measured at the network input, after the config's own pipeline,
once per input scale it trains at (both ends of a random resize range,
each scale of a random choice; ``resize_variants``).

Shapes: G GTs of one image, N priors of all levels, L levels, M GTs of
the whole dataset.
"""
import copy
import json
import math
import os
import os.path as osp
import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from tood.models.task_modules import grid_points, make_priors
from tood.structures import DetDataSample, PaddedGT, points_inside_boxes

# COCO's object sizes, by area (in input pixels here).
COCO_SIZES = (('small', 0, 32**2), ('medium', 32**2, 96**2),
              ('large', 96**2, math.inf))
# Input scales the counterfactuals try: 2x is also what 2x2 tiles, each
# resized to the full input, give.
UPSCALES = (1.5, 2.0)
# The margin by which points_inside_boxes wants a point inside a box.
INSIDE_MARGIN = 0.01
# GT elements x priors per chunk of the inside test (about 16 MiB of bool).
_CHUNK = 1 << 24
_RESIZES = ('Resize', 'RandomResize', 'RandomChoiceResize')


@dataclass
class Audit:
    """Every GT of a dataset at one input scale.

    Attributes:
        scale: the scale's name, e.g. ``'448x448'``, or ``'as loaded'``.
        strides: the head's strides, one per level.
        boxes: (M, 4) xyxy at the network input.
        labels: (M,) class indices.
        input_shapes: (M, 2) (H, W) of each GT's input image.
        tal: (M, L) priors whose point is inside the box, per level.
        atss: (M, L) ATSS positives, per level.
    """
    scale: str
    strides: Tuple[int, ...]
    boxes: np.ndarray
    labels: np.ndarray
    input_shapes: np.ndarray
    tal: np.ndarray
    atss: np.ndarray


def _type_name(transform: dict) -> str:
    kind = transform.get('type')
    return kind if isinstance(kind, str) else getattr(kind, '__name__', '')


def _scales_of(transform: dict) -> List[Tuple[int, int]]:
    """The fixed scales that stand for a resize transform's range: the
    scale of ``Resize``, both ends of ``RandomResize`` (a pair of scales,
    or one scale times the ends of ``ratio_range``), every scale of
    ``RandomChoiceResize``."""
    kind = _type_name(transform)
    if kind == 'RandomChoiceResize':
        return [tuple(s) for s in transform['scales']]
    scale = transform.get('scale')
    if kind == 'RandomResize':
        ratios = transform.get('ratio_range')
        if ratios:
            return [(int(scale[0] * r), int(scale[1] * r)) for r in ratios]
        # mmcv draws each side between the two scales' values.
        low = tuple(min(a, b) for a, b in zip(*scale))
        high = tuple(max(a, b) for a, b in zip(*scale))
        return [low, high] if low != high else [low]
    if scale is None:
        # Resize by scale_factor: nothing to enumerate.
        return []
    return [tuple(scale) if not isinstance(scale, int) else (scale, scale)]


def resize_variants(pipeline: Sequence[dict]) -> List[Tuple[str, list]]:
    """The pipeline once per input scale it trains (or tests) at.

    Each variant replaces the pipeline's resize by a fixed ``Resize`` at
    one scale (keeping ``keep_ratio``), and loads the annotations right
    after the image so that the boxes follow the resize (test pipelines
    load them after it, in the original frame, for the metrics). Without
    a resize the pipeline runs as it is (``'as loaded'``).

    Returns:
        ``[(name, pipeline), ...]``, e.g. ``('448x448', [...])``.
    """
    pipeline = [copy.deepcopy(dict(t)) for t in pipeline]
    loads = [t for t in pipeline if _type_name(t) == 'LoadAnnotations']
    rest = [t for t in pipeline if _type_name(t) != 'LoadAnnotations']
    if not loads:
        loads = [dict(type='LoadAnnotations', with_bbox=True)]
    # Right after the image loader (the first transform).
    ordered = rest[:1] + loads + rest[1:]
    resizes = [i for i, t in enumerate(ordered) if _type_name(t) in _RESIZES]
    if not resizes:
        return [('as loaded', ordered)]
    index = resizes[0]
    resize = ordered[index]
    variants = []
    for scale in _scales_of(resize):
        fixed = dict(
            type='Resize',
            scale=scale,
            keep_ratio=resize.get('keep_ratio', False))
        variants.append((f'{scale[0]}x{scale[1]}', ordered[:index] +
                         [fixed] + ordered[index + 1:]))
    return variants or [('as configured', ordered)]


def padded_shape(shape: Sequence[int], divisor: int) -> Tuple[int, int]:
    """(H, W) padded up to a multiple of ``divisor``, as the data
    preprocessor pads a batch."""
    return tuple(int(math.ceil(s / divisor) * divisor) for s in shape[:2])


def level_sizes(shape: Sequence[int],
                strides: Sequence[int]) -> List[Tuple[int, int]]:
    """(H, W) of each level of a padded input: its size over the stride,
    rounded up as stride-2 convolutions with padding do."""
    return [(int(math.ceil(shape[0] / s)), int(math.ceil(shape[1] / s)))
            for s in strides]


def priors_inside(boxes: Tensor, points: Tensor,
                  level_counts: Sequence[int]) -> Tensor:
    """(G, 4) boxes, (N, 2) prior points -> (G, L) how many points of each
    level lie inside each box (the assigners' own test)."""
    rows = max(1, _CHUNK // max(1, points.size(0)))
    counts = []
    for chunk in boxes.split(rows):
        inside = points_inside_boxes(points[None], chunk[:, None])  # (R, N)
        counts.append(
            torch.stack([c.sum(1) for c in inside.split(level_counts, 1)],
                        1))
    if not counts:
        return boxes.new_zeros((0, len(level_counts)), dtype=torch.long)
    return torch.cat(counts)


def atss_positives(assigner, boxes: Tensor, input_shape: Sequence[int],
                   strides: Sequence[int], anchor_scale: float,
                   level_counts: Sequence[int],
                   pad_shape: Sequence[int]) -> Tensor:
    """(G, L) the priors ATSS assigns to each GT of one image, per level.

    ``assigner`` is the config's ``ATSSAssigner``, run on the priors of
    the image's padded input.
    """
    G = boxes.size(0)
    sample = DetDataSample(
        metainfo=dict(img_shape=tuple(input_shape[:2]),
                      pad_shape=tuple(pad_shape),
                      batch_input_shape=tuple(pad_shape)))
    sizes = level_sizes(pad_shape, strides)
    priors = make_priors(sizes, strides, anchor_scale, [sample],
                         boxes.device)
    gt = PaddedGT(boxes[None].float(),
                  torch.zeros((1, G), dtype=torch.long),
                  torch.ones((1, G), dtype=torch.bool))
    gt_index = assigner.assign(priors, gt).gt_index[0]  # (N,)
    counts = []
    for part in gt_index.split(list(level_counts)):
        part = part[part >= 0]
        counts.append(torch.bincount(part, minlength=G))
    return torch.stack(counts, 1)


def audit_image(boxes: Tensor, input_shape: Sequence[int],
                strides: Sequence[int], pad_divisor: int,
                assigner, anchor_scale: float) -> Tuple[Tensor, Tensor]:
    """(G, 4) boxes at the input of one image -> (G, L) TAL candidates
    and (G, L) ATSS positives per level."""
    pad_shape = padded_shape(input_shape, pad_divisor)
    sizes = level_sizes(pad_shape, strides)
    counts = [h * w for h, w in sizes]
    points, _ = grid_points(sizes, strides, boxes.device)
    tal = priors_inside(boxes.float(), points, counts)
    atss = atss_positives(assigner, boxes, input_shape, strides,
                          anchor_scale, counts, pad_shape)
    return tal, atss


def audit_dataset(dataset,
                  scale: str,
                  strides: Sequence[int],
                  assigner,
                  anchor_scale: float = 8,
                  pad_divisor: int = 1,
                  num_images: Optional[int] = None,
                  seed: int = 0,
                  progress: bool = True) -> Audit:
    """Run ``dataset``'s pipeline over its images and audit every GT.

    Args:
        dataset: a dataset whose items are ``PackDetInputs`` outputs with
            the boxes at the network input (``resize_variants``).
        scale: the name of the input scale, for the report.
        strides: ``model.bbox_head.strides``.
        assigner: the built ``model.train_cfg.initial_assigner``.
        anchor_scale: ``model.bbox_head.anchor_scale`` (ATSS's anchors).
        pad_divisor: ``model.data_preprocessor.pad_size_divisor``.
        num_images: the first so many images; None: all.
        seed: seeds Python's and numpy's generators first, so that random
            transforms (flips) are the same for every run.
        progress: show a progress bar.
    """
    from mmengine.utils import ProgressBar

    random.seed(seed)
    np.random.seed(seed)
    total = len(dataset) if num_images is None else min(
        len(dataset), num_images)
    bar = ProgressBar(total) if progress else None
    boxes, labels, shapes, tal, atss = [], [], [], [], []
    for index in range(total):
        sample = dataset[index]['data_samples']
        gt = sample.gt_instances
        input_shape = sample.metainfo['img_shape'][:2]
        if len(gt):
            image_boxes = gt.bboxes
            image_boxes = getattr(image_boxes, 'tensor', image_boxes)
            counts = audit_image(image_boxes.float(), input_shape, strides,
                                 pad_divisor, assigner, anchor_scale)
            boxes.append(image_boxes.float().numpy())
            labels.append(gt.labels.numpy())
            shapes.append(np.tile(input_shape, (len(gt), 1)))
            tal.append(counts[0].numpy())
            atss.append(counts[1].numpy())
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.file.write('\n')
    L = len(strides)
    return Audit(
        scale=scale,
        strides=tuple(int(s) for s in strides),
        boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4)),
        labels=np.concatenate(labels) if labels else np.zeros(0, int),
        input_shapes=np.concatenate(shapes) if shapes else np.zeros(
            (0, 2), int),
        tal=np.concatenate(tal) if tal else np.zeros((0, L), int),
        atss=np.concatenate(atss) if atss else np.zeros((0, L), int))


def size_bins(audit: Audit) -> Dict[str, np.ndarray]:
    """Masks over the GTs: COCO's small/medium/large by area at the input,
    then by the shorter side against the strides (``side < 8``,
    ``8 <= side < 16``, ..., ``side >= 128``)."""
    w = audit.boxes[:, 2] - audit.boxes[:, 0]
    h = audit.boxes[:, 3] - audit.boxes[:, 1]
    area, side = w * h, np.minimum(w, h)
    bins = {name: (area >= lo) & (area < hi) for name, lo, hi in COCO_SIZES}
    edges = [0, *audit.strides, math.inf]
    for lo, hi in zip(edges[:-1], edges[1:]):
        name = (f'side < {hi}' if lo == 0 else f'side >= {lo}'
                if hi == math.inf else f'{lo} <= side < {hi}')
        bins[name] = (side >= lo) & (side < hi)
    return bins


def zero_after(audit: Audit, mask: np.ndarray, factor: float,
               stride: float) -> int:
    """How many GTs of ``mask`` would still have no prior inside with the
    input scaled by ``factor`` and a level of ``stride`` (the nested grids
    make the finest level decide)."""
    if not mask.any():
        return 0
    boxes = torch.from_numpy(audit.boxes[mask] * factor).float()
    zero = 0
    for box, shape in zip(boxes, audit.input_shapes[mask]):
        # One more point than the scaled image needs in each direction.
        size = level_sizes([s * factor + stride for s in shape], [stride])
        points, _ = grid_points(size, [stride], box.device)
        inside = priors_inside(box[None], points, [len(points)])
        zero += int(inside.sum() == 0)
    return zero


def summarise(audit: Audit, classes: Sequence[str]) -> dict:
    """The numbers the tool prints and saves (json-ready)."""
    tal_total, atss_total = audit.tal.sum(1), audit.atss.sum(1)
    tal_zero, atss_zero = tal_total == 0, atss_total == 0
    finest = min(audit.strides)

    def counts(mask: np.ndarray) -> dict:
        return dict(
            gts=int(mask.sum()),
            tal_zero=int((tal_zero & mask).sum()),
            atss_zero=int((atss_zero & mask).sum()))

    by_size = {name: counts(m) for name, m in size_bins(audit).items()}
    by_class = {
        name: counts(audit.labels == k)
        for k, name in enumerate(classes)
    }
    levels = []
    for i, stride in enumerate(audit.strides):
        levels.append(
            dict(
                stride=stride,
                tal_mean=float(audit.tal[:, i].mean()) if len(audit.tal)
                else 0.0,
                tal_any=int((audit.tal[:, i] > 0).sum()),
                atss_mean=float(audit.atss[:, i].mean()) if len(audit.atss)
                else 0.0,
                atss_any=int((audit.atss[:, i] > 0).sum())))
    what_if = [
        dict(change=f'input x{f:g}' + (' (or 2x2 tiles)' if f == 2 else ''),
             tal_zero=zero_after(audit, tal_zero, f, finest))
        for f in UPSCALES
    ]
    what_if.append(
        dict(change=f'a level of stride {finest / 2:g}',
             tal_zero=zero_after(audit, tal_zero, 1.0, finest / 2)))
    sides = np.minimum(audit.boxes[:, 2] - audit.boxes[:, 0],
                       audit.boxes[:, 3] - audit.boxes[:, 1])[tal_zero]
    positive = sides[sides > 0]
    return dict(
        scale=audit.scale,
        strides=list(audit.strides),
        gts=int(len(audit.labels)),
        tal_zero=int(tal_zero.sum()),
        atss_zero=int(atss_zero.sum()),
        degenerate=int((sides <= 0).sum()),
        # The upscale after which every zero-candidate GT spans more than
        # the finest stride (plus the inside test's margin on both sides)
        # in both directions, which guarantees a prior inside; rounded up.
        upscale_for_all=math.ceil(
            (finest + 2 * INSIDE_MARGIN) / positive.min() * 100) / 100
        if len(positive) else None,
        by_size=by_size,
        by_class=by_class,
        levels=levels,
        what_if=what_if)


def format_report(summary: dict) -> str:
    """One scale's summary as Markdown tables."""
    lines = [
        f'## Input scale {summary["scale"]}: {summary["gts"]} GTs, '
        f'{summary["tal_zero"]} without a TAL candidate, '
        f'{summary["atss_zero"]} without an ATSS positive', '',
        '| GTs | count | no TAL candidate | no ATSS positive |',
        '| --- | ---: | ---: | ---: |'
    ]
    for group in ('by_size', 'by_class'):
        for name, row in summary[group].items():
            if row['gts']:
                lines.append(f'| {name} | {row["gts"]} | {row["tal_zero"]} '
                             f'| {row["atss_zero"]} |')
    lines += [
        '', '| level (stride) | TAL candidates per GT | GTs with one '
        'or more | ATSS positives per GT | GTs with one or more |',
        '| --- | ---: | ---: | ---: | ---: |'
    ]
    for level in summary['levels']:
        lines.append(f'| P{int(math.log2(level["stride"]))} '
                     f'({level["stride"]}) | {level["tal_mean"]:.2f} | '
                     f'{level["tal_any"]} | {level["atss_mean"]:.2f} | '
                     f'{level["atss_any"]} |')
    if summary['tal_zero']:
        lines += ['', '| what would change it | GTs still without a '
                  'TAL candidate |', '| --- | ---: |']
        lines += [f'| {row["change"]} | {row["tal_zero"]} |'
                  for row in summary['what_if']]
        if summary['upscale_for_all']:
            lines.append(f'\nAn input {summary["upscale_for_all"]:.2f}x '
                         'larger makes every such GT wider and taller '
                         'than the finest stride, which guarantees one.')
        if summary['degenerate']:
            lines.append(f'{summary["degenerate"]} of them have zero width '
                         'or height: fix their annotations.')
    return '\n'.join(lines)


def plot_histograms(audits: Sequence[Audit], out_file: str,
                    max_count: int = 20) -> str:
    """PNG: for each input scale (rows) and COCO size (columns), the
    histogram of TAL candidates and ATSS positives per GT (counts above
    ``max_count`` in the last bar)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * len(COCO_SIZES), 3 * len(audits)),
                 layout='constrained')
    axes = np.array(fig.subplots(len(audits), len(COCO_SIZES),
                                 squeeze=False))
    bins = np.arange(max_count + 2) - 0.5
    for row, audit in enumerate(audits):
        masks = size_bins(audit)
        for col, (name, _, _) in enumerate(COCO_SIZES):
            ax = axes[row, col]
            mask = masks[name]
            for values, label in ((audit.tal, 'TAL candidates'),
                                  (audit.atss, 'ATSS positives')):
                ax.hist(np.minimum(values[mask].sum(1), max_count),
                        bins=bins, alpha=0.6, label=label)
            ax.set_title(f'{audit.scale}, {name} ({int(mask.sum())} GTs)')
            ax.set_xlabel(f'priors per GT ({max_count}: {max_count} or '
                          'more)')
            ax.set_ylabel('GTs')
            if row == 0 and col == 0:
                ax.legend()
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file, dpi=100)
    return out_file


def write_json(summaries: Sequence[dict], out_file: str) -> str:
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    with open(out_file, 'w') as f:
        json.dump(dict(scales=list(summaries)), f, indent=1)
    return out_file
