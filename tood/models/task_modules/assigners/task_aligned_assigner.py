"""Task-aligned assignment (TAL), Sec. 3.2.1 of the TOOD paper.

Equation numbers refer to Feng et al., "TOOD: Task-aligned One-stage Object
Detection", ICCV 2021. Shapes: B images, N priors of all levels, G padded
GT slots per image, K classes, k candidates per GT.

``assign`` follows the paper step by step: the alignment metric t of eq. (9)
and its top-k over all levels, the inside-object test, the conflict rule,
the normalised t-hat of eq. (10). Only the first step touches every (GT,
prior) pair: ``dense_topk`` evaluates ``alignment_metric`` image by image
over chunks of GT rows sized to stay in a core's cache, so memory grows
with N times the classes present rather than with N times G.
"""
from functools import partial
from typing import Optional, Tuple

import torch
from torch import Tensor

from tood.errors import check_value
from tood.registry import TASK_UTILS
from tood.structures import (PaddedGT, box_area, box_iou,
                             points_inside_boxes)

from ..priors import Priors
from ._dense import dense_topk, power
from .assign_result import AssignResult, resolve_claims


def alignment_metric(scores: Tensor, ious: Tensor, alpha: float,
                     beta: float, out: Optional[Tensor] = None) -> Tensor:
    """Eq. (9): t = s^alpha · u^beta, how well a prior's prediction is
    aligned with a GT: s its aligned score for the GT's class, u the IoU of
    its predicted box with the GT (tensors of one shape; t goes into
    ``out`` when given, which must be neither)."""
    return power(ious, beta, out).mul_(power(scores, alpha))


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
        metric = partial(alignment_metric, alpha=self.alpha, beta=self.beta)
        for b, slots in gt.slots_per_image():
            cand_t[b, slots], cand_idx[b, slots] = dense_topk(
                metric, pred_scores[b], pred_bboxes[b], priors.points,
                gt.bboxes[b, slots], gt.labels[b, slots], priors.valid[b], k,
                self.inside_first)
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
