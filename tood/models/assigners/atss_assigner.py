"""Adaptive Training Sample Selection (Zhang et al., CVPR 2020).

TOOD uses it on the anchor boxes for its warm-up epochs. The candidate
search runs image by image over cache-sized chunks of GTs, so its memory
does not grow with GTs x priors.
"""
from typing import List, Tuple

import torch
from torch import Tensor

from tood.registry import TASK_UTILS
from tood.structures import aligned_iou, points_inside_boxes
from .assign_result import AssignResult


@TASK_UTILS.register_module()
class ATSSAssigner:
    """Assign priors to GTs with an IoU threshold adapted to each GT.

    For every GT: per pyramid level, the ``topk`` valid priors whose anchor
    centres are nearest the GT centre are candidates; the threshold is the
    mean plus the unbiased standard deviation of the candidates' anchor
    IoUs; a candidate is positive if its IoU reaches the threshold and its
    anchor centre lies strictly inside the GT. A prior claimed by several
    GTs goes to the one with the highest IoU (ties: lowest GT index).

    Args:
        topk: candidates per level and GT.
    """

    def __init__(self, topk: int = 9) -> None:
        self.topk = topk

    @torch.no_grad()
    def assign(self, anchors: Tensor, num_level_priors: List[int],
               gt_bboxes: Tensor, gt_valid: Tensor,
               prior_valid: Tensor) -> AssignResult:
        """Assign the priors of a batch of images.

        Args:
            anchors: (N, 4) anchor boxes of all levels, level by level;
                shared by every image.
            num_level_priors: number of priors of each level (sums to N).
            gt_bboxes: (B, G, 4) GT boxes, padded to G slots per image.
            gt_valid: (B, G) bool, False for padded slots.
            prior_valid: (B, N) bool, False for priors outside an image's
                own padded area.
        Returns:
            AssignResult with ``metrics`` equal to ``overlaps``.
        """
        num_imgs, num_gts = gt_bboxes.shape[:2]
        num_priors = anchors.size(0)
        assert sum(num_level_priors) == num_priors
        gt_index = torch.full((num_imgs, num_priors), -1, dtype=torch.long,
                              device=anchors.device)
        overlaps = anchors.new_zeros((num_imgs, num_priors))
        if num_gts == 0 or num_priors == 0:
            return AssignResult(gt_index, gt_index >= 0, overlaps,
                                overlaps.clone())

        anchor_centres = (anchors[:, :2] + anchors[:, 2:]) * 0.5
        gt_centres = (gt_bboxes[..., :2] + gt_bboxes[..., 2:]) * 0.5

        # Candidates: per level the nearest valid priors, image by image;
        # padded GT slots keep no valid candidate.
        num_cands = sum(min(self.topk, n) for n in num_level_priors)
        cand_idx = torch.zeros((num_imgs, num_gts, num_cands),
                               dtype=torch.long, device=anchors.device)
        cand_valid = torch.zeros((num_imgs, num_gts, num_cands),
                                 dtype=torch.bool, device=anchors.device)
        for b in range(num_imgs):
            slots = gt_valid[b].nonzero().squeeze(1)
            if slots.numel() > 0:
                cand_idx[b, slots], cand_valid[b, slots] = self._nearest(
                    anchor_centres, num_level_priors, gt_centres[b, slots],
                    prior_valid[b])

        gt_boxes = gt_bboxes[:, :, None, :]
        ious = aligned_iou(anchors[cand_idx], gt_boxes)  # (B, G, K)

        # Mean and unbiased std over each GT's valid candidates. With a
        # single candidate the std is taken as 0 (torch.std would give NaN
        # and silently drop the GT).
        weight = cand_valid.to(ious.dtype)
        count = weight.sum(-1, keepdim=True)
        mean = (ious * weight).sum(-1, keepdim=True) / count.clamp(min=1)
        var = ((ious - mean).square() * weight).sum(
            -1, keepdim=True) / (count - 1).clamp(min=1)
        threshold = mean + var.sqrt()

        inside = points_inside_boxes(anchor_centres[cand_idx], gt_boxes)
        positive = cand_valid & (ious >= threshold) & inside

        # Resolve priors claimed by several GTs on the flattened (B * N)
        # prior axis: keep the highest IoU, then the lowest GT index.
        img_offset = torch.arange(
            num_imgs, device=anchors.device)[:, None, None] * num_priors
        flat_idx = (cand_idx + img_offset).flatten()
        pos_ious = torch.where(positive, ious, -1.0)
        best_iou = ious.new_full((num_imgs * num_priors, ), -1.0)
        best_iou.scatter_reduce_(0, flat_idx, pos_ious.flatten(), 'amax')
        winner = positive & (ious == best_iou[flat_idx].view_as(ious))
        gt_ids = torch.arange(num_gts, device=anchors.device)[None, :, None]
        gt_ids = torch.where(winner, gt_ids, num_gts)
        gt_flat = torch.full_like(gt_index.view(-1), num_gts)
        gt_flat.scatter_reduce_(0, flat_idx, gt_ids.flatten(), 'amin')

        fg_mask = (gt_flat < num_gts).view(num_imgs, num_priors)
        gt_index = torch.where(fg_mask, gt_flat.view_as(gt_index), -1)
        overlaps = torch.where(fg_mask, best_iou.view_as(overlaps), 0.0)
        return AssignResult(gt_index, fg_mask, overlaps, overlaps.clone())

    def _nearest(self, anchor_centres: Tensor, num_level_priors: List[int],
                 gt_centres: Tensor,
                 prior_valid: Tensor) -> Tuple[Tensor, Tensor]:
        """Per level, the ``topk`` valid priors nearest each GT centre.

        Args:
            anchor_centres: (N, 2); gt_centres: (G, 2); prior_valid: (N, ).
        Returns:
            (G, K) prior indices, level after level, and whether each one is
            valid (a level with fewer than k valid priors still fills its k
            slots).
        """
        cand_idx, cand_valid = [], []
        start = 0
        for level_size in num_level_priors:
            end = start + level_size
            k = min(self.topk, level_size)
            if k > 0:
                cx, cy = anchor_centres[start:end].t().contiguous()
                level_valid = prior_valid[start:end]
                idx = torch.cat([
                    self._level_topk(gt_centres[s:s + rows], cx, cy,
                                     level_valid, k)
                    for s, rows in _chunks(gt_centres.size(0), level_size,
                                           cx.device)
                ])
                cand_valid.append(level_valid[idx])
                cand_idx.append(idx + start)
            start = end
        return torch.cat(cand_idx, -1), torch.cat(cand_valid, -1)

    @staticmethod
    def _level_topk(gt_centres: Tensor, cx: Tensor, cy: Tensor,
                    level_valid: Tensor, k: int) -> Tensor:
        """(R, 2) GT centres, (L, ) prior centres -> (R, k) nearest."""
        dist = gt_centres[:, 0, None] - cx  # (R, L); squared is enough
        dist.square_()
        dy = gt_centres[:, 1, None] - cy
        dist += dy.square_()
        del dy
        # Invalid priors are pushed to the end; when a level has fewer
        # than k valid priors some of them are still picked and masked out
        # by the caller, which caps k at the valid count.
        dist.masked_fill_(~level_valid, float('inf'))
        return dist.topk(k, dim=-1, largest=False).indices


def _chunks(num_rows: int, row_length: int,
            device: torch.device) -> List[Tuple[int, int]]:
    """(start, rows) chunks of a (num_rows, row_length) float computation:
    on the CPU about 1 MiB each, so that it stays in cache; on a GPU a few
    large ones."""
    budget = (1 << 18) if device.type == 'cpu' else (1 << 23)
    rows = max(1, budget // max(1, row_length))
    return [(s, min(rows, num_rows - s)) for s in range(0, num_rows, rows)]
