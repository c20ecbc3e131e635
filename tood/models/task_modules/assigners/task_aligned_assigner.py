"""Task-aligned assignment (TAL), Sec. 3.2.1 of the TOOD paper.

Equation numbers refer to Feng et al., "TOOD: Task-aligned One-stage Object
Detection", ICCV 2021. Shapes: B images, N priors of all levels, G padded
GT slots per image, K classes, k candidates per GT.

``assign`` follows the paper step by step: the alignment metric t of eq. (9)
and its top-k over all levels, the inside-object test, the conflict rule,
the normalised t-hat of eq. (10). Only the first step touches every (GT,
prior) pair; it runs in ``_dense_topk``, image by image over chunks of GT
rows sized to stay in a core's cache, so memory grows with N times the
classes present rather than with N times G.
"""
from typing import Tuple

import torch
from torch import Tensor

from tood.errors import check_value
from tood.registry import TASK_UTILS
from tood.structures import (PaddedGT, box_area, box_iou,
                             points_inside_boxes)

from ..priors import Priors
from .assign_result import CPU_CHUNK, GPU_CHUNK, AssignResult, resolve_claims


@TASK_UTILS.register_module()
class TaskAlignedAssigner:
    """Assign priors to GTs by the alignment metric t = s^alpha * u^beta.

    Args:
        topk: candidates per GT (k = 13 in the paper).
        alpha, beta: exponents of eq. (9); configs set them in ``train_cfg``
            and the head passes them here.
        conflict: a prior claimed by several GTs goes to the GT whose IoU
            with the prior's predicted box is highest (``'max_iou'``, the
            published code) or to the smallest GT (``'min_area'``, the
            paper's supplementary).
        eps: added to max t in eq. (10).
        inside_first: an ablation that applies the inside-object test
            before the top-k, so a GT keeps k positives whenever it
            contains k priors with t > 0.
    """

    def __init__(self, topk: int = 13, alpha: float = 1.0, beta: float = 6.0,
                 conflict: str = 'max_iou', eps: float = 1e-7,
                 inside_first: bool = False):
        check_value(conflict in ('max_iou', 'min_area'), 'conflict',
                    "'max_iou' or 'min_area'", conflict)
        check_value(isinstance(topk, int) and topk >= 1, 'topk',
                    'a positive integer', topk)
        self.topk, self.alpha, self.beta = topk, alpha, beta
        self.conflict, self.eps = conflict, eps
        self.inside_first = inside_first

    @torch.no_grad()
    def assign(self, priors: Priors, gt: PaddedGT, pred_scores: Tensor,
               pred_bboxes: Tensor) -> AssignResult:
        """Assign the priors of a batch.

        Args:
            priors: ``Priors`` (points, valid).
            gt: the padded GTs.
            pred_scores: (B, N, K) aligned classification scores P (eq. 5).
            pred_bboxes: (B, N, 4) predicted boxes in input pixels.
        Returns:
            AssignResult with ``metrics`` t-hat (eq. 10) and ``overlaps`` u.
        """
        B, N, _ = pred_scores.shape
        pred_scores, pred_bboxes = pred_scores.float(), pred_bboxes.float()
        cand_t, cand_idx = self.select_topk_candidates(priors, gt, pred_scores,
                                                       pred_bboxes)
        batch = torch.arange(B, device=cand_idx.device)[:, None, None]
        cand_u = box_iou(gt.bboxes[:, :, None], pred_bboxes[batch, cand_idx])
        positive = self.inside_object(cand_t, cand_idx, priors.points, gt)
        gt_index, final = self.resolve_conflicts(positive, cand_u, cand_idx,
                                                 gt, N)
        t_hat, u = self.normalise_alignment(cand_t, cand_u, final, cand_idx, N)
        return AssignResult(gt_index, gt_index >= 0, u, t_hat)

    def select_topk_candidates(self, priors: Priors, gt: PaddedGT,
                               pred_scores: Tensor,
                               pred_bboxes: Tensor) -> Tuple[Tensor, Tensor]:
        """Eq. (9) and its top-k over all levels: per GT, the k priors of
        largest t. Returns (B, G, k) values of t (-1 on padded GT slots and
        invalid priors) and prior indices."""
        B, G = gt.labels.shape
        k = min(self.topk, pred_scores.size(1))
        cand_t = pred_scores.new_full((B, G, k), -1.0)
        cand_idx = gt.labels.new_zeros((B, G, k))
        for b, slots in gt.slots_per_image():
            cand_t[b, slots], cand_idx[b, slots] = _dense_topk(
                pred_scores[b], pred_bboxes[b], priors.points,
                gt.bboxes[b, slots], gt.labels[b, slots], priors.valid[b], k,
                self.alpha, self.beta, self.inside_first)
        return cand_t, cand_idx

    @staticmethod
    def inside_object(cand_t: Tensor, cand_idx: Tensor, points: Tensor,
                      gt: PaddedGT) -> Tensor:
        """(B, G, k) positives: candidates with t > 0 whose prior point lies
        inside the GT. The test comes after the top-k, so a GT may keep
        fewer than k positives, or none."""
        inside = points_inside_boxes(points[cand_idx], gt.bboxes[:, :, None])
        return (cand_t > 0) & inside & gt.valid[:, :, None]

    def resolve_conflicts(self, positive: Tensor, cand_u: Tensor,
                          cand_idx: Tensor, gt: PaddedGT,
                          num_priors: int) -> Tuple[Tensor, Tensor]:
        """The conflict rule. Returns (B, N) the GT slot of each prior (-1
        for background) and (B, G, k) the candidate pairs that won."""
        key = (cand_u if self.conflict == 'max_iou' else
               -box_area(gt.bboxes)[:, :, None].expand_as(cand_u))
        return resolve_claims(positive, key, cand_idx, num_priors)[:2]

    def normalise_alignment(self, cand_t: Tensor, cand_u: Tensor,
                            final: Tensor, cand_idx: Tensor,
                            num_priors: int) -> Tuple[Tensor, Tensor]:
        """Eq. (10): t-hat = t / max t * max u, maxima per GT over its
        positives. Returns (B, N) t-hat and u of each prior's pair."""
        t, u = cand_t.where(final, 0.0), cand_u.where(final, 0.0)
        t_hat = t * (u.amax(-1, keepdim=True) /
                     (t.amax(-1, keepdim=True) + self.eps))
        # One final pair per foreground prior: a sum over the candidates
        # pointing at a prior copies that pair's values; (B, G, k) -> (B, N).
        flat_idx, zeros = cand_idx.flatten(1), t.new_zeros(len(t), num_priors)
        return (zeros.scatter_add(1, flat_idx, t_hat.flatten(1)),
                zeros.scatter_add(1, flat_idx, u.flatten(1)))


def _dense_topk(scores: Tensor, boxes: Tensor, points: Tensor,
                gt_bboxes: Tensor, gt_labels: Tensor, prior_valid: Tensor,
                k: int, alpha: float, beta: float,
                inside_first: bool) -> Tuple[Tensor, Tensor]:
    """The k largest t of each GT of one image, chunk of GT rows by chunk.

    Args:
        scores: (N, K); boxes: (N, 4); points: (N, 2); gt_bboxes: (G, 4);
        gt_labels: (G,); prior_valid: (N,).
    Returns:
        (G, k) values of t (-1 for invalid priors) and prior indices.
    """
    N, G = boxes.size(0), gt_bboxes.size(0)
    # The top-k runs in two stages over blocks of a row (``_topk_by_blocks``)
    # whose width must be a whole number of blocks; the -inf padding is
    # never picked, since every row holds k values >= -1.
    block = max(1, min(64, N // (4 * k)))
    width = -(-N // block) * block
    rows = max(1, min(G, (CPU_CHUNK if boxes.is_cpu else GPU_CHUNK) // width))
    # Three buffers for the whole image, reused by every chunk.
    t = boxes.new_full((rows, width), float('-inf'))
    w1, w2 = boxes.new_empty(rows, N), boxes.new_empty(rows, N)
    boxes = boxes.t().contiguous().t()  # contiguous coordinates for box_iou
    box_areas, gt_areas = box_area(boxes), box_area(gt_bboxes)[:, None]
    # s^alpha: one row of scores per class present, read once.
    classes, class_of_gt = gt_labels.unique(return_inverse=True)
    class_scores = scores.t().index_select(0, classes)  # (U, N)
    if alpha != 1:
        class_scores.pow_(alpha)
    # Priors on the batch padding must never be candidates.
    invalid = None if bool(prior_valid.all()) else ~prior_valid
    values, indices = boxes.new_empty(G, k), gt_labels.new_empty(G, k)
    for start in range(0, G, rows):
        r, gts = min(rows, G - start), slice(start, start + rows)
        u = box_iou(gt_bboxes[gts, None], boxes, out=t[:r, :N],
                    scratch=(w1[:r], w2[:r]), areas=(gt_areas[gts], box_areas))
        _pow(u, beta, w1[:r]).mul_(torch.index_select(
            class_scores, 0, class_of_gt[gts], out=w1[:r]))
        if invalid is not None:
            u.masked_fill_(invalid, -1.0)
        if inside_first:
            u.masked_fill_(
                ~points_inside_boxes(points, gt_bboxes[gts, None]), -1.0)
        values[gts], indices[gts] = _topk_by_blocks(t[:r], k, block)
    return values, indices


def _pow(x: Tensor, exponent: float, tmp: Tensor) -> Tensor:
    """x ** exponent in place (``tmp``: scratch shaped like x); integer
    exponents (beta = 6 in the paper) by repeated squaring, a few
    multiplications instead of a pow per element."""
    if exponent != int(exponent) or not 1 <= exponent <= 64:
        return x.pow_(exponent)
    tmp.copy_(x)
    for bit in bin(int(exponent))[3:]:
        x.square_()
        if bit == '1':
            x.mul_(tmp)
    return x


def _topk_by_blocks(values: Tensor, k: int,
                    block: int) -> Tuple[Tensor, Tensor]:
    """Row-wise top-k of (R, M·block) values: (R, k) values and indices.

    The k largest values of a row all lie in the k blocks with the largest
    block maxima, so a max per block, a top-k over the blocks and a top-k
    over k·block values replace a top-k over the whole row (about 4x
    faster). Among tied values the index is arbitrary, as with torch.topk.
    """
    rows = values.size(0)
    top_blocks = values.view(rows, -1, block).amax(-1).topk(k, dim=-1).indices
    offsets = torch.arange(block, device=values.device)
    idx = (top_blocks[:, :, None] * block + offsets).view(rows, k * block)
    top_values, j = values.gather(1, idx).topk(k, dim=-1)
    return top_values, idx.gather(1, j)
