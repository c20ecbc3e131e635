"""Task-aligned assignment (TAL), Sec. 3.2.1 of the TOOD paper, eq. (9), (10).

The only dense work is the alignment metric t of every (GT, prior) pair and
its top-k per GT. It runs image by image over chunks of GT rows sized so
that the three chunk buffers (1 MiB each on the CPU) stay in a core's
cache; everything after the top-k works on the (B, G, k) candidates. So
memory grows with the priors times the classes present, not times the GTs,
and on one CPU thread this is about 5x faster than whole (B, G, N) passes
at 200 GTs and 10x at 1,000 (tools/analysis/benchmark.py --task assign).
"""
from typing import Tuple

import torch
from torch import Tensor

from tood.registry import TASK_UTILS
from tood.structures import box_area, points_inside_boxes

from .assign_result import AssignResult


# Elements (GT rows x priors) of one chunk of the dense stage. On the CPU,
# 2^18 floats (1 MiB) per buffer keeps the chunk in L2 cache; on a GPU,
# bigger chunks mean fewer kernel launches.
CPU_CHUNK_ELEMENTS = 1 << 18
GPU_CHUNK_ELEMENTS = 1 << 23
# Block length of the two-stage top-k (see ``_topk_by_blocks``).
TOPK_BLOCK = 64


def box_iou_broadcast(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """IoU of boxes (..., 4) and (..., 4) that broadcast against each other.

    The same arithmetic, in the same order, as the chunked dense stage of
    ``TaskAlignedAssigner``, so both give bit-identical IoUs.
    """
    iw = torch.minimum(a[..., 2], b[..., 2])
    iw -= torch.maximum(a[..., 0], b[..., 0])
    iw.clamp_(min=0)
    ih = torch.minimum(a[..., 3], b[..., 3])
    ih -= torch.maximum(a[..., 1], b[..., 1])
    ih.clamp_(min=0)
    inter = iw.mul_(ih)
    del ih
    union = box_area(a) + box_area(b)
    union -= inter
    return inter.div_(union.clamp_(min=eps))


def pairwise_iou(gt_bboxes: Tensor, boxes: Tensor, eps: float = 1e-6) -> Tensor:
    """IoU of every GT with every box of the same image.

    Args:
        gt_bboxes: (B, G, 4).
        boxes: (B, N, 4).
    Returns:
        (B, G, N).
    """
    return box_iou_broadcast(gt_bboxes[:, :, None, :], boxes[:, None, :, :],
                             eps)


def _pow_(x: Tensor, exponent: float, tmp: Tensor) -> Tensor:
    """x ** exponent in place; ``tmp`` is scratch space shaped like x.

    Integer exponents (beta = 6 in the paper) use repeated squaring: a few
    multiplications instead of a transcendental pow per element.
    """
    if exponent == int(exponent) and 1 <= exponent <= 64:
        e = int(exponent)
        if e > 1:
            tmp.copy_(x)
            for bit in bin(e)[3:]:
                x.square_()
                if bit == '1':
                    x.mul_(tmp)
        return x
    return x.pow_(exponent)


def _topk_by_blocks(values: Tensor, k: int,
                    block: int) -> Tuple[Tensor, Tensor]:
    """Row-wise top-k of (R, M·block) values: (R, k) values and indices.

    The k largest values of a row all lie in the k blocks with the largest
    block maxima (each of those blocks holds a value at least as large as
    the k-th largest block maximum). So a cheap max per block, a top-k over
    the blocks and a top-k over k·block values replace a top-k over the
    whole row, about 4x faster. Among tied values the choice of index is
    arbitrary, as with ``torch.topk``.
    """
    rows = values.size(0)
    block_max = values.view(rows, -1, block).amax(-1)
    top_blocks = block_max.topk(k, dim=-1).indices  # (R, k)
    offsets = torch.arange(block, device=values.device)
    idx = (top_blocks[:, :, None] * block + offsets).view(rows, k * block)
    top_values, j = values.gather(1, idx).topk(k, dim=-1)
    return top_values, idx.gather(1, j)


@TASK_UTILS.register_module()
class TaskAlignedAssigner:
    """Assign priors to GTs by the alignment metric t = s^alpha * u^beta.

    Per GT, the ``topk`` priors with the largest t over all pyramid levels are
    candidates; a candidate is positive if t > 0 and its prior point lies
    inside the GT. (With ``inside_first``, an ablation, only priors inside
    the GT can be candidates, so before conflicts a GT keeps k positives
    whenever it contains k priors with t > 0.) A prior claimed by several
    GTs goes to the GT whose IoU with the prior's predicted box is highest
    (``conflict='max_iou'``, the published code) or to the smallest GT
    (``conflict='min_area'``, the paper's supplementary).

    Args:
        topk: candidates per GT (k = 13 in the paper).
        conflict: ``'max_iou'`` or ``'min_area'``.
        eps: added to max t in eq. (10).
        inside_first: apply the inside-GT test before the top-k instead of
            after it. Costs one more (rows, N, 4) temporary per chunk.
    """

    def __init__(self, topk: int = 13, conflict: str = 'max_iou',
                 eps: float = 1e-7, inside_first: bool = False):
        if conflict not in ('max_iou', 'min_area'):
            raise ValueError(
                f"conflict must be 'max_iou' or 'min_area', got {conflict!r}")
        self.topk = topk
        self.conflict = conflict
        self.eps = eps
        self.inside_first = inside_first

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
        gt_index = torch.full((B, N), -1, dtype=torch.long, device=device)
        if G == 0 or N == 0:
            zeros = pred_scores.new_zeros(B, N)
            return AssignResult(gt_index, gt_index >= 0, zeros, zeros.clone())

        # Top-k of eq. (9) per GT, image by image; padding slots keep
        # metric -1 and are never positive.
        k = min(self.topk, N)
        cand_metric = pred_scores.new_full((B, G, k), -1.0)
        cand_idx = torch.zeros((B, G, k), dtype=torch.long, device=device)
        for b in range(B):
            slots = gt_valid[b].nonzero().squeeze(1)
            if slots.numel() > 0:
                cand_metric[b, slots], cand_idx[b, slots] = self._top_metric(
                    pred_scores[b], pred_bboxes[b], points,
                    gt_bboxes[b, slots], gt_labels[b, slots], prior_valid[b],
                    k, alpha, beta)

        gt_boxes = gt_bboxes[:, :, None, :]
        cand_boxes = pred_bboxes.gather(
            1, cand_idx.view(B, G * k, 1).expand(B, G * k, 4)).view(B, G, k, 4)
        cand_iou = box_iou_broadcast(gt_boxes, cand_boxes)  # u, (B, G, k)
        # The inside-GT test comes after the top-k (by default), so a GT may
        # keep fewer than k positives, or none.
        is_pos = (cand_metric > 0) & points_inside_boxes(
            points[cand_idx], gt_boxes) & gt_valid[:, :, None]

        # Resolve priors claimed by several GTs.
        if self.conflict == 'max_iou':
            key = cand_iou
        else:
            key = -box_area(gt_bboxes)[:, :, None].expand(B, G, k)
        key = key.masked_fill(~is_pos, float('-inf'))
        flat_idx = cand_idx.reshape(B, G * k)
        best = key.new_full((B, N), float('-inf'))
        best.scatter_reduce_(1, flat_idx, key.reshape(B, G * k), 'amax')
        wins = is_pos & (key == best.gather(1, flat_idx).view(B, G, k))
        # Ties go to the lowest GT index, as an argmax over GTs would.
        g_index = torch.arange(G, device=device)[None, :, None].expand(B, G, k)
        winner = torch.full((B, N), G, dtype=torch.long, device=device)
        winner.scatter_reduce_(
            1, flat_idx, torch.where(wins, g_index, G).reshape(B, G * k),
            'amin')
        fg_mask = winner < G
        gt_index = torch.where(fg_mask, winner, gt_index)
        # Each prior's assigned pair is one of its GT's candidates.
        final = wins & (winner.gather(1, flat_idx).view(B, G, k) == g_index)

        # Eq. (10): t-hat = t / max_{P_g} t * max_{P_g} u, per GT over its
        # final positives.
        metric = cand_metric.where(final, 0.0)
        iou = cand_iou.where(final, 0.0)
        max_metric = metric.amax(-1, keepdim=True)
        max_iou = iou.amax(-1, keepdim=True)
        norm_metric = metric * (max_iou / (max_metric + self.eps))
        # Exactly one pair per foreground prior is final, so a sum over the
        # candidates pointing at a prior copies that pair's values.
        prior_metric = pred_scores.new_zeros(B, N).scatter_add_(
            1, flat_idx, norm_metric.reshape(B, G * k))
        prior_iou = pred_scores.new_zeros(B, N).scatter_add_(
            1, flat_idx, iou.reshape(B, G * k))
        return AssignResult(
            gt_index=gt_index,
            fg_mask=fg_mask,
            overlaps=prior_iou,
            metrics=prior_metric)

    def _top_metric(self, scores: Tensor, boxes: Tensor, points: Tensor,
                    gt_bboxes: Tensor, gt_labels: Tensor, prior_valid: Tensor,
                    k: int, alpha: float,
                    beta: float) -> Tuple[Tensor, Tensor]:
        """The k largest t of eq. (9) of each GT of one image.

        Args:
            scores: (N, C); boxes: (N, 4); points: (N, 2);
            gt_bboxes: (G, 4); gt_labels: (G, ); prior_valid: (N, ).
        Returns:
            (G, k) values of t (-1 for invalid priors) and prior indices.
        """
        N, G = boxes.size(0), gt_bboxes.size(0)
        device = boxes.device
        # Pad rows to whole blocks for the two-stage top-k; -inf padding is
        # never picked since every row holds k values >= -1.
        block = max(1, min(TOPK_BLOCK, N // (4 * k)))
        width = -(-N // block) * block
        chunk = (CPU_CHUNK_ELEMENTS
                 if device.type == 'cpu' else GPU_CHUNK_ELEMENTS)
        rows = max(1, min(G, chunk // width))
        metric_buf = boxes.new_empty(rows, width)
        metric_buf[:, N:] = float('-inf')
        tmp1 = boxes.new_empty(rows, N)
        tmp2 = boxes.new_empty(rows, N)

        bx1, by1, bx2, by2 = boxes.t().contiguous()  # (N, ) each
        box_areas = box_area(boxes)
        gt_areas = box_area(gt_bboxes)
        # s: one row of scores per class present, read once.
        classes, class_of_gt = gt_labels.unique(return_inverse=True)
        class_scores = scores.t().index_select(0, classes)  # (U, N)
        if alpha != 1:
            class_scores.pow_(alpha)
        # Priors on the batch padding must never be candidates.
        invalid = None if bool(prior_valid.all()) else ~prior_valid

        values, indices = [], []
        for start in range(0, G, rows):
            end = min(G, start + rows)
            r = end - start
            gx1, gy1, gx2, gy2 = gt_bboxes[start:end, :, None].unbind(1)
            t, w1, w2 = metric_buf[:r, :N], tmp1[:r], tmp2[:r]
            # u = IoU, as box_iou_broadcast computes it, into t.
            torch.minimum(gx2, bx2, out=t)
            t.sub_(torch.maximum(gx1, bx1, out=w1)).clamp_(min=0)
            torch.minimum(gy2, by2, out=w1)
            w1.sub_(torch.maximum(gy1, by1, out=w2)).clamp_(min=0)
            t.mul_(w1)
            torch.add(gt_areas[start:end, None], box_areas, out=w1)
            t.div_(w1.sub_(t).clamp_(min=1e-6))
            # t = s^alpha * u^beta.
            _pow_(t, beta, w1)
            t.mul_(torch.index_select(
                class_scores, 0, class_of_gt[start:end], out=w1))
            if invalid is not None:
                t.masked_fill_(invalid, -1.0)
            if self.inside_first:
                t.masked_fill_(
                    ~points_inside_boxes(points, gt_bboxes[start:end, None]),
                    -1.0)
            top_values, top_idx = _topk_by_blocks(metric_buf[:r], k, block)
            values.append(top_values)
            indices.append(top_idx)
        return torch.cat(values), torch.cat(indices)
