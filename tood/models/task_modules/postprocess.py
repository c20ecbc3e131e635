"""From per-level class probabilities and boxes to the detections of each
image: the inference of every dense head.

Shapes: B images, K classes, H×W one level, M detections of one image.
"""
from typing import List, Optional, Sequence

import torch
from mmengine.structures import InstanceData
from torch import Tensor
from torchvision.ops import batched_nms


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
    score_factors = score_factors or [None] * len(cls_scores)
    results = []
    for b, meta in enumerate(batch_img_metas):
        img_boxes, img_scores, img_labels = [], [], []
        for cls_score, bbox_pred, factor, stride in zip(
                cls_scores, bbox_preds, score_factors, strides):
            num_classes = cls_score.size(1)
            score = cls_score[b].permute(1, 2, 0).reshape(-1)  # (H·W·K)
            keep = (score > score_thr).nonzero().squeeze(1)
            score = score[keep]
            if score.numel() > nms_pre:
                score, top = score.topk(nms_pre)
                keep = keep[top]
            prior_idx = keep // num_classes
            if factor is not None:
                score = (score * factor[b].reshape(-1)[prior_idx]).sqrt()
            box = bbox_pred[b].permute(1, 2, 0).reshape(-1, 4)[prior_idx]
            img_boxes.append(box * stride)
            img_scores.append(score)
            img_labels.append(keep % num_classes)
        boxes = torch.cat(img_boxes).float()
        scores = torch.cat(img_scores).float()
        labels = torch.cat(img_labels)
        if rescale:
            sx, sy = meta.get('scale_factor', (1.0, 1.0))
            boxes = boxes / boxes.new_tensor([sx, sy, sx, sy])
            h, w = meta['ori_shape'][:2]
        else:
            h, w = meta['img_shape'][:2]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        keep = batched_nms(boxes, scores, labels, iou_thr)[:max_per_img]
        results.append(InstanceData(bboxes=boxes[keep], scores=scores[keep],
                                    labels=labels[keep]))
    return results
