"""From a dense head's per-level outputs to the detections of each image:
the inference of every dense head, eager and exported alike.

Two steps, so that an exported graph can stop after the first (``--no-nms``
exports) and its runtime finish with the second:

1. ``dense_predictions``: per-level class probabilities and boxes (in
   stride units) to per-prior tensors, the boxes scaled back to the
   original image and clipped to it (as the official TOOD code does, before
   NMS);
2. ``select_detections``: per level the best ``nms_pre`` (prior, class)
   pairs scoring above ``score_thr``, class-aware NMS over all levels, the
   best ``max_per_img``.

Every size in both steps is fixed by the input's shape and ``TestCfg``
(top-k over padded rows instead of thresholded, data-dependent selections),
so ``torch.export`` traces one graph for every input, and the eager code is
that graph. NMS is the op ``tood::class_nms`` below: torchvision's
``batched_nms`` when run, one ONNX ``NonMaxSuppression`` when exported
(``tood.deployment``).

Shapes: B images, K classes, H×W one level, N priors of all levels, L
levels, C = L·nms_pre candidates, D = ``max_per_img``.
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from mmengine.structures import InstanceData
from torch import Tensor
from torch.profiler import record_function
from torchvision.ops import batched_nms

from tood.errors import ConfigError, check_value

from ..profiling import POSTPROCESS
from .priors import levels_to_priors


class TestCfg(NamedTuple):
    """The post-processing settings, ``model.test_cfg`` of a config.

    Attributes:
        score_thr: a (prior, class) pair competes when its class
            probability is above this.
        nms_pre: pairs kept per level before NMS (the best ones).
        iou_threshold: NMS suppresses a box whose IoU with a better box of
            its class is above this.
        max_per_img: detections per image, the best after NMS.
        min_bbox_size: boxes whose width or height (original-image pixels)
            is not above this are dropped; -1 keeps every box, as the
            official TOOD code does (MMDetection's configs set 0, which
            drops zero-size boxes).
    """
    score_thr: float = 0.05
    nms_pre: int = 1000
    iou_threshold: float = 0.6
    max_per_img: int = 100
    min_bbox_size: float = -1

    @classmethod
    def from_config(cls, cfg: Optional[dict]) -> 'TestCfg':
        """From MMDetection's layout: ``score_thr``, ``nms_pre``,
        ``nms=dict(type='nms', iou_threshold=...)``, ``max_per_img``,
        ``min_bbox_size``; missing keys keep their defaults.

        Raises:
            ConfigError: an unknown key, another NMS than ``'nms'``, or a
                value out of range, named by its config key.
        """
        cfg = dict(cfg or {})
        nms = dict(cfg.pop('nms', None) or {})
        kind = nms.pop('type', 'nms')
        check_value(kind == 'nms', 'model.test_cfg.nms.type',
                    "'nms' (class-aware NMS)", kind)
        if 'iou_threshold' in nms:
            cfg['iou_threshold'] = nms.pop('iou_threshold')
        unknown = sorted(set(cfg) - set(cls._fields)) + [
            f'nms.{key}' for key in nms]
        if unknown:
            raise ConfigError(
                f'model.test_cfg has the key(s) {", ".join(unknown)}, which '
                'the post-processing does not take (it takes score_thr, '
                'nms_pre, nms.iou_threshold, max_per_img, min_bbox_size)')
        test_cfg = cls(**cfg)
        for key in ('nms_pre', 'max_per_img'):
            value = getattr(test_cfg, key)
            check_value(isinstance(value, int) and value >= 1,
                        f'model.test_cfg.{key}', 'a positive integer', value)
        check_value(0 <= test_cfg.iou_threshold <= 1,
                    'model.test_cfg.nms.iou_threshold', 'between 0 and 1',
                    test_cfg.iou_threshold)
        return test_cfg

    def to_config(self) -> dict:
        """MMDetection's layout, as ``from_config`` reads it."""
        return dict(score_thr=self.score_thr, nms_pre=self.nms_pre,
                    nms=dict(type='nms', iou_threshold=self.iou_threshold),
                    max_per_img=self.max_per_img,
                    min_bbox_size=self.min_bbox_size)


class PaddedDetections(NamedTuple):
    """The detections of a batch, best first, padded to D per image."""
    num: Tensor  # (B,) int64, how many rows of each image are detections
    boxes: Tensor  # (B, D, 4) x1 y1 x2 y2; 0 on padding
    scores: Tensor  # (B, D); 0 on padding
    labels: Tensor  # (B, D) int64; -1 on padding

    def instances(self) -> List[InstanceData]:
        """Per image ``InstanceData`` with its ``num`` rows of ``bboxes``,
        ``scores`` and ``labels``."""
        return [
            InstanceData(bboxes=boxes[:n], scores=scores[:n],
                         labels=labels[:n])
            for n, boxes, scores, labels in zip(
                self.num.tolist(), self.boxes, self.scores, self.labels)
        ]


# ---------------------------------------------------------------------- #
# Class-aware NMS as an op with ONNX NonMaxSuppression's meaning
# ---------------------------------------------------------------------- #
@torch.library.custom_op('tood::class_nms', mutates_args=())
def class_nms(boxes: Tensor, scores: Tensor, labels: Tensor,
              num_classes: int, iou_threshold: float,
              max_per_class: int) -> Tensor:
    """Which candidates survive class-aware NMS.

    Per image and class, among the candidates scoring above 0, greedy NMS
    (a box goes when its IoU with a better kept box is above
    ``iou_threshold``). ONNX's operator keeps at most ``max_per_class``
    boxes per class; this eager version keeps them all, which changes
    nothing for a caller that keeps the best ``max_per_class`` overall.

    Args:
        boxes: (B, C, 4) x1 y1 x2 y2.
        scores: (B, C); those at or below 0 are not candidates.
        labels: (B, C) int64 in [0, num_classes).
    Returns:
        (B, C) bool.
    """
    keep = torch.zeros_like(scores, dtype=torch.bool)
    for b in range(scores.size(0)):
        idx = (scores[b] > 0).nonzero().squeeze(1)
        kept = batched_nms(boxes[b, idx], scores[b, idx], labels[b, idx],
                           iou_threshold)
        keep[b, idx[kept]] = True
    return keep


@class_nms.register_fake
def _(boxes: Tensor, scores: Tensor, labels: Tensor, num_classes: int,
      iou_threshold: float, max_per_class: int) -> Tensor:
    return torch.empty_like(scores, dtype=torch.bool)


# ---------------------------------------------------------------------- #
# The two steps
# ---------------------------------------------------------------------- #
def dense_predictions(
        cls_scores: Sequence[Tensor], bbox_preds: Sequence[Tensor],
        strides: Sequence[int], scale_factor: Tensor, clip_shape: Tensor,
        score_factors: Optional[Sequence[Tensor]] = None
) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Per-level outputs to per-prior ones, boxes in output pixels.

    Args:
        cls_scores: per level (B, K, H, W) class probabilities.
        bbox_preds: per level (B, 4, H, W) boxes xyxy in stride units.
        strides: stride of each level.
        scale_factor: (B, 2) (w_scale, h_scale) of the input over the
            output image; boxes are divided by it.
        clip_shape: (B, 2) (height, width) of the output image; boxes are
            clipped to it.
        score_factors: per level (B, 1, H, W) probabilities that multiply
            into the final score (ATSS's centerness), or None.
    Returns:
        (B, N, K) probabilities, (B, N, 4) boxes, (B, N) factors or None.
    """
    scores = levels_to_priors(cls_scores).float()
    boxes = levels_to_priors(
        [b.float() * s for b, s in zip(bbox_preds, strides)])
    scale = scale_factor.float().repeat(1, 2)[:, None]  # (B, 1, 4)
    hw = clip_shape.float()
    limits = torch.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], 1)
    boxes = torch.minimum((boxes / scale).clamp(min=0), limits[:, None])
    factors = (levels_to_priors(score_factors)[..., 0].float()
               if score_factors is not None else None)
    return scores, boxes, factors


def select_detections(scores: Tensor, boxes: Tensor,
                      level_sizes: Sequence[int], cfg: TestCfg,
                      factors: Optional[Tensor] = None) -> PaddedDetections:
    """The detections of per-prior predictions.

    Per level, the best ``nms_pre`` (prior, class) pairs whose class
    probability is above ``score_thr`` (and, with ``min_bbox_size``, whose
    box is large enough); then, over all levels, class-aware NMS and the
    best ``max_per_img``. With ``factors`` (ATSS) the threshold and
    ``nms_pre`` still look at the class probability alone, as in
    MMDetection, and the final score, by which NMS ranks, is
    sqrt(probability · factor), the ATSS paper's geometric mean.

    Args:
        scores: (B, N, K) class probabilities.
        boxes: (B, N, 4) boxes in output pixels.
        level_sizes: priors of each level, summing to N.
        cfg: the settings.
        factors: (B, N) score factors, or None.
    Returns:
        ``PaddedDetections`` padded to ``max_per_img``.
    """
    B, N, K = scores.shape
    k, D = cfg.nms_pre, cfg.max_per_img
    neg_inf = float('-inf')
    # Per level the best k pairs, prior-major; padding with -inf keeps k a
    # constant on levels with fewer than k pairs.
    probs, pairs, start = [], [], 0
    for size in level_sizes:
        level = scores[:, start:start + size].reshape(B, -1)
        level = torch.cat([level, level.new_full((B, k), neg_inf)], 1)
        top, index = level.topk(k, dim=1)
        probs.append(top)
        pairs.append(index + start * K)
        start += size
    prob, pair = torch.cat(probs, 1), torch.cat(pairs, 1)  # (B, C)
    # Padding pairs point past the priors: any prior will do, they never
    # compete (probability -inf).
    prior = torch.div(pair, K, rounding_mode='floor').clamp(max=N - 1)
    labels = pair % K
    cand_boxes = boxes.gather(1, prior[..., None].expand(-1, -1, 4))
    valid = prob > cfg.score_thr
    if cfg.min_bbox_size >= 0:
        wh = cand_boxes[..., 2:] - cand_boxes[..., :2]
        valid = valid & (wh > cfg.min_bbox_size).all(-1)
    score = prob if factors is None else (
        prob.clamp(min=0) * factors.gather(1, prior)).sqrt()
    score = torch.where(valid, score, 0.0)
    keep = class_nms(cand_boxes, score, labels, K, cfg.iou_threshold, D)
    # The best D survivors, best first; padding makes D a constant however
    # few there are.
    final = torch.where(keep & valid, score, neg_inf)
    final = torch.cat([final, final.new_full((B, D), neg_inf)], 1)
    top, index = final.topk(D, dim=1)
    found = top > neg_inf
    index = index.clamp(max=final.size(1) - D - 1)
    out_boxes = cand_boxes.gather(1, index[..., None].expand(-1, -1, 4))
    return PaddedDetections(
        num=found.sum(1),
        boxes=torch.where(found[..., None], out_boxes, 0.0),
        scores=torch.where(found, top, 0.0),
        labels=torch.where(found, labels.gather(1, index), -1))


def detections_from_levels(
        cls_scores: Sequence[Tensor], bbox_preds: Sequence[Tensor],
        strides: Sequence[int], batch_img_metas: Sequence[dict],
        cfg: TestCfg, rescale: bool = True,
        score_factors: Optional[Sequence[Tensor]] = None
) -> List[InstanceData]:
    """Both steps for a batch whose images are described by their
    metainfo: ``scale_factor`` and ``ori_shape`` with ``rescale``, else
    ``img_shape`` (boxes stay in input pixels).

    Returns:
        Per image ``InstanceData`` with ``bboxes`` (M, 4), ``scores`` (M,)
        and ``labels`` (M,), best first.
    """
    device = cls_scores[0].device
    scale = [m.get('scale_factor', (1.0, 1.0)) if rescale else (1.0, 1.0)
             for m in batch_img_metas]
    shape = [m['ori_shape' if rescale else 'img_shape'][:2]
             for m in batch_img_metas]
    with record_function(POSTPROCESS):
        scores, boxes, factors = dense_predictions(
            cls_scores, bbox_preds, strides,
            torch.tensor(scale, dtype=torch.float32, device=device),
            torch.tensor(shape, dtype=torch.float32, device=device),
            score_factors)
        level_sizes = [s.shape[-2] * s.shape[-1] for s in cls_scores]
        return select_detections(scores, boxes, level_sizes, cfg,
                                 factors).instances()
