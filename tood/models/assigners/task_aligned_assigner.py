"""Task-aligned assignment (TAL), Sec. 3.2.1 of the TOOD paper, eq. (9), (10).

Batched over images and GT slots with padded tensors; peak memory is about
three (B, G, N) float buffers (IoU, alignment metric, one temporary).
"""
import torch
from torch import Tensor

from tood.registry import TASK_UTILS
from tood.structures import box_area, points_inside_boxes

from .assign_result import AssignResult


def pairwise_iou(gt_bboxes: Tensor, boxes: Tensor, eps: float = 1e-6) -> Tensor:
    """IoU of every GT with every box of the same image.

    Args:
        gt_bboxes: (B, G, 4).
        boxes: (B, N, 4).
    Returns:
        (B, G, N). Written with in-place ops so that at most three (B, G, N)
        buffers are alive at once.
    """
    g = gt_bboxes[:, :, None, :]
    b = boxes[:, None, :, :]
    iw = torch.minimum(g[..., 2], b[..., 2])
    iw -= torch.maximum(g[..., 0], b[..., 0])
    iw.clamp_(min=0)
    ih = torch.minimum(g[..., 3], b[..., 3])
    ih -= torch.maximum(g[..., 1], b[..., 1])
    ih.clamp_(min=0)
    inter = iw.mul_(ih)
    del ih
    union = box_area(gt_bboxes)[:, :, None] + box_area(boxes)[:, None, :]
    union -= inter
    return inter.div_(union.clamp_(min=eps))


@TASK_UTILS.register_module()
class TaskAlignedAssigner:
    """Assign priors to GTs by the alignment metric t = s^alpha * u^beta.

    Per GT, the ``topk`` priors with the largest t over all pyramid levels are
    candidates; a candidate is positive if t > 0 and its prior point lies
    inside the GT. A prior claimed by several GTs goes to the GT whose IoU
    with the prior's predicted box is highest (``conflict='max_iou'``, the
    published code) or to the smallest GT (``conflict='min_area'``, the
    paper's supplementary).

    Args:
        topk: candidates per GT (k = 13 in the paper).
        conflict: ``'max_iou'`` or ``'min_area'``.
        eps: added to max t in eq. (10).
    """

    def __init__(self, topk: int = 13, conflict: str = 'max_iou',
                 eps: float = 1e-7):
        if conflict not in ('max_iou', 'min_area'):
            raise ValueError(
                f"conflict must be 'max_iou' or 'min_area', got {conflict!r}")
        self.topk = topk
        self.conflict = conflict
        self.eps = eps

    @torch.no_grad()
    def assign(self,
               pred_scores: Tensor,
               pred_bboxes: Tensor,
               points: Tensor,
               gt_bboxes: Tensor,
               gt_labels: Tensor,
               gt_valid: Tensor,
               prior_valid: Tensor,
               alpha: float = 1.0,
               beta: float = 6.0) -> AssignResult:
        """Assign the priors of a batch.

        Args:
            pred_scores: (B, N, C) aligned classification scores P (eq. 5).
            pred_bboxes: (B, N, 4) predicted boxes in input pixels.
            points: (N, 2) prior points (x, y) in input pixels.
            gt_bboxes: (B, G, 4) GT boxes, padded to the largest G.
            gt_labels: (B, G) long class indices.
            gt_valid: (B, G) bool, False on padding slots.
            prior_valid: (B, N) bool, False for priors on the batch padding.
            alpha, beta: exponents of eq. (9).
        Returns:
            AssignResult whose ``metrics`` hold the normalised t-hat of
            eq. (10) and ``overlaps`` the IoU u of the assigned pair.
        """
        B, N, _ = pred_scores.shape
        G = gt_bboxes.size(1)
        device = pred_scores.device
        pred_scores = pred_scores.float()
        pred_bboxes = pred_bboxes.float()
        gt_bboxes = gt_bboxes.float()

        # u: IoU of each predicted box with each GT, (B, G, N).
        overlaps = pairwise_iou(gt_bboxes, pred_bboxes)
        # s: the score of each GT's class at each prior, (B, G, N).
        labels = gt_labels.clamp(min=0)[:, :, None].expand(B, G, N)
        align = pred_scores.transpose(1, 2).gather(1, labels)
        # Eq. (9): t = s^alpha * u^beta, built in place in the score buffer.
        if alpha != 1:
            align.pow_(alpha)
        align.mul_(overlaps.pow(beta))
        # Priors on the batch padding must never be candidates.
        align.masked_fill_(~prior_valid[:, None, :], -1.0)

        k = min(self.topk, N)
        cand_metric, cand_idx = align.topk(k, dim=-1)  # (B, G, k)
        cand_points = points[cand_idx]  # (B, G, k, 2)
        # The inside-GT test comes after the top-k, so a GT may keep fewer
        # than k positives, or none.
        is_pos = (cand_metric > 0) & points_inside_boxes(
            cand_points, gt_bboxes[:, :, None, :]) & gt_valid[:, :, None]

        # Resolve priors claimed by several GTs.
        if self.conflict == 'max_iou':
            key = overlaps.gather(-1, cand_idx)
        else:
            key = -box_area(gt_bboxes)[:, :, None].expand(B, G, k)
        key = key.masked_fill(~is_pos, float('-inf'))
        flat_idx = cand_idx.reshape(B, G * k)
        best = key.new_full((B, N), float('-inf'))
        best.scatter_reduce_(1, flat_idx, key.reshape(B, G * k), 'amax')
        wins = is_pos & (key == best.gather(1, flat_idx).view(B, G, k))
        # Ties go to the lowest GT index, as an argmax over GTs would.
        g_index = torch.arange(G, device=device)[None, :, None].expand(B, G, k)
        gt_index = torch.full((B, N), G, dtype=torch.long, device=device)
        gt_index.scatter_reduce_(
            1, flat_idx, torch.where(wins, g_index, G).reshape(B, G * k),
            'amin')
        fg_mask = gt_index < G
        gt_index[~fg_mask] = -1

        # t and u of each prior's assigned pair, (B, N).
        pick = gt_index.clamp(min=0)[:, None, :]
        metric = align.gather(1, pick).squeeze(1).where(fg_mask, 0.0)
        iou = overlaps.gather(1, pick).squeeze(1).where(fg_mask, 0.0)
        del align, overlaps

        # Eq. (10): t-hat = t / max_{P_g} t * max_{P_g} u, per GT over its
        # final positives.
        scatter_idx = gt_index.clamp(min=0)
        max_metric = metric.new_zeros(B, G).scatter_reduce_(
            1, scatter_idx, metric, 'amax')
        max_iou = iou.new_zeros(B, G).scatter_reduce_(1, scatter_idx, iou,
                                                      'amax')
        norm = (max_iou / (max_metric + self.eps)).gather(1, scatter_idx)
        norm_metric = (metric * norm).where(fg_mask, 0.0)
        return AssignResult(
            gt_index=gt_index,
            fg_mask=fg_mask,
            overlaps=iou,
            metrics=norm_metric)
