"""Target and output plumbing shared by the dense heads (TOOD, ATSS, GFL,
parallel head).

Shapes: B images, N priors of all levels concatenated (level after level,
row-major within a level), G padded GT slots, K classes.
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from mmengine.dist import all_reduce
from mmengine.structures import InstanceData
from torch import Tensor
from torchvision.ops import batched_nms

from tood.registry import TASK_UTILS
from tood.structures import DetDataSample

from .priors import grid_priors, square_anchors, valid_prior_mask


def setup_task_aligned_training(head, train_cfg: dict) -> None:
    """Give ``head`` what ``TOODHead.loss_by_feat`` reads from train_cfg.

    ATSS warm-up for ``initial_epoch`` epochs with ``initial_assigner``,
    then ``assigner`` (TAL) with exponents ``alpha`` and ``beta``;
    ``hard_labels`` is the soft-vs-hard target ablation.
    """
    head.initial_epoch = train_cfg.get('initial_epoch', 4)
    head.initial_assigner = TASK_UTILS.build(train_cfg['initial_assigner'])
    head.assigner = TASK_UTILS.build(train_cfg['assigner'])
    head.alpha = train_cfg.get('alpha', 1)
    head.beta = train_cfg.get('beta', 6)
    head.hard_labels = train_cfg.get('hard_labels', False)


def levels_to_priors(maps: Sequence[Tensor]) -> Tensor:
    """Per level (B, C, H, W) -> (B, N, C), in prior order."""
    B = maps[0].size(0)
    return torch.cat(
        [m.permute(0, 2, 3, 1).reshape(B, -1, m.size(1)) for m in maps], 1)


def batch_prior_valid(featmap_sizes: Sequence[Tuple[int, int]],
                      strides: Sequence[int],
                      data_samples: List[DetDataSample],
                      device: torch.device) -> Tensor:
    """(B, N) bool: the priors on each image's own padded area."""
    return valid_prior_mask(
        featmap_sizes, strides,
        [s.metainfo.get('pad_shape', s.metainfo['batch_input_shape'])
         for s in data_samples], device)


def pad_gt_instances(gt_instances: List[InstanceData],
                     device: torch.device) -> Tuple[Tensor, Tensor, Tensor]:
    """Stack per-image GTs into padded tensors.

    Returns:
        bboxes (B, G, 4), labels (B, G) long, valid (B, G) bool with
        G = max(1, most GTs in one image).
    """
    B = len(gt_instances)
    G = max([len(g) for g in gt_instances] + [1])
    bboxes = torch.zeros(B, G, 4, device=device)
    labels = torch.zeros(B, G, dtype=torch.long, device=device)
    valid = torch.zeros(B, G, dtype=torch.bool, device=device)
    for i, g in enumerate(gt_instances):
        n = len(g)
        bboxes[i, :n] = g.bboxes.to(device).float()
        labels[i, :n] = g.labels.to(device)
        valid[i, :n] = True
    return bboxes, labels, valid


def global_normaliser(value: Tensor) -> Tensor:
    """Average over processes, at least 1; a constant for autograd."""
    value = value.detach().clone().float()
    all_reduce(value, op='mean')
    return value.clamp(min=1)


class AnchorTargets(NamedTuple):
    """Targets of a batch assigned on square anchors (ATSS)."""
    points: Tensor  # (N, 2) prior points, input pixels
    prior_strides: Tensor  # (N,)
    prior_valid: Tensor  # (B, N) bool
    fg: Tensor  # (B, N) bool
    labels: Tensor  # (B, N) long, num_classes for background
    target_boxes: Tensor  # (B, N, 4) the assigned GT (meaningless on bg)


def anchor_targets(assigner, featmap_sizes: Sequence[Tuple[int, int]],
                   strides: Sequence[int], anchor_scale: float,
                   num_classes: int, data_samples: List[DetDataSample],
                   device: torch.device) -> AnchorTargets:
    """Assign the priors of a batch with an anchor-box assigner (ATSS) on
    one square anchor of side ``anchor_scale`` × stride per prior."""
    points, prior_strides = grid_priors(featmap_sizes, strides, device)
    gt_bboxes, gt_labels, gt_valid = pad_gt_instances(
        [s.gt_instances for s in data_samples], device)
    prior_valid = batch_prior_valid(featmap_sizes, strides, data_samples,
                                    device)
    anchors = square_anchors(points, prior_strides, anchor_scale)
    assign = assigner.assign(anchors, [h * w for h, w in featmap_sizes],
                             gt_bboxes, gt_valid, prior_valid)
    fg = assign.fg_mask
    B, N = fg.shape
    pick = assign.gt_index.clamp(min=0)
    labels = gt_labels.gather(1, pick).where(fg, num_classes)
    target_boxes = gt_bboxes.gather(1, pick[..., None].expand(B, N, 4))
    return AnchorTargets(points, prior_strides, prior_valid, fg, labels,
                         target_boxes)


def predict_by_levels(cls_scores: List[Tensor],
                      bbox_preds: List[Tensor],
                      strides: Sequence[int],
                      batch_img_metas: List[dict],
                      test_cfg: dict,
                      rescale: bool = True,
                      score_factors: Optional[List[Tensor]] = None
                      ) -> List[InstanceData]:
    """Detections per image from per-level class probabilities and boxes.

    Per level: (prior, class) pairs whose class probability is above
    ``score_thr``, at most ``nms_pre`` of them; then all levels together:
    boxes back to the original image and clipped to it, class-aware NMS,
    the best ``max_per_img``.

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
    if score_factors is None:
        score_factors = [None] * len(cls_scores)
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
        results.append(
            InstanceData(
                bboxes=boxes[keep], scores=scores[keep], labels=labels[keep]))
    return results
