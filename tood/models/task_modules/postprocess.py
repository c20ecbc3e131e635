"""From per-level class probabilities and boxes to the detections of each
image: the inference of every dense head.

Shapes: B images, K classes, H×W one level, M detections of one image.
"""
from typing import List, Optional, Sequence

import torch
from mmengine.structures import InstanceData
from torch import Tensor
from torchvision.ops import batched_nms

from .priors import levels_to_priors


def detections_from_levels(
        cls_scores: List[Tensor], bbox_preds: List[Tensor],
        strides: Sequence[int], batch_img_metas: List[dict], test_cfg: dict,
        rescale: bool = True,
        score_factors: Optional[List[Tensor]] = None) -> List[InstanceData]:
    """Detections per image.

    Per level: (prior, class) pairs whose class probability is above
    ``score_thr``, at most ``nms_pre`` of them; then all levels together:
    boxes back to the original image and clipped to it (as the official
    TOOD code does, before NMS), class-aware NMS, the best ``max_per_img``.

    Args:
        cls_scores: per level (B, K, H, W) class probabilities.
        bbox_preds: per level (B, 4, H, W) boxes xyxy in stride units.
        strides: stride of each level.
        batch_img_metas: per image; ``scale_factor``, ``ori_shape`` (with
            ``rescale``) or ``img_shape``.
        test_cfg: ``score_thr``, ``nms_pre``, ``nms.iou_threshold``,
            ``max_per_img``.
        rescale: return boxes in original-image pixels.
        score_factors: per level (B, 1, H, W) probabilities (ATSS
            centerness). The threshold and ``nms_pre`` still look at the
            class probability alone, as in MMDetection; the final score is
            sqrt(probability · factor), the ATSS paper's geometric mean.
    Returns:
        Per image InstanceData with ``bboxes`` (M, 4), ``scores`` (M,),
        ``labels`` (M,), sorted by score.
    """
    score_thr = test_cfg.get('score_thr', 0.05)
    nms_pre = test_cfg.get('nms_pre', 1000)
    iou_thr = test_cfg.get('nms', {}).get('iou_threshold', 0.6)
    max_per_img = test_cfg.get('max_per_img', 100)
    K = cls_scores[0].size(1)
    level_sizes = [s.shape[-2] * s.shape[-1] * K for s in cls_scores]
    scores = levels_to_priors(cls_scores).float()  # (B, N, K)
    boxes = levels_to_priors([b.float() * s for b, s in zip(bbox_preds,
                                                            strides)])
    factors = (levels_to_priors(score_factors)[..., 0].float()
               if score_factors is not None else None)  # (B, N)
    results = []
    for b, meta in enumerate(batch_img_metas):
        flat = scores[b].reshape(-1)  # (N·K), (prior, class) pairs
        keep, start = [], 0
        for level in flat.split(level_sizes):
            idx = (level > score_thr).nonzero().squeeze(1)
            if idx.numel() > nms_pre:
                idx = idx[level[idx].topk(nms_pre).indices]
            keep.append(idx + start)
            start += level.numel()
        keep = torch.cat(keep)
        img_scores, prior, labels = flat[keep], keep // K, keep % K
        if factors is not None:
            img_scores = (img_scores * factors[b, prior]).sqrt()
        img_boxes = boxes[b, prior]
        if rescale:
            sx, sy = meta.get('scale_factor', (1.0, 1.0))
            img_boxes = img_boxes / img_boxes.new_tensor([sx, sy, sx, sy])
        h, w = meta['ori_shape' if rescale else 'img_shape'][:2]
        img_boxes = img_boxes.clamp(min=0).minimum(
            img_boxes.new_tensor([w, h, w, h]))
        keep = batched_nms(img_boxes, img_scores, labels,
                           iou_thr)[:max_per_img]
        results.append(
            InstanceData(bboxes=img_boxes[keep], scores=img_scores[keep],
                         labels=labels[keep]))
    return results
