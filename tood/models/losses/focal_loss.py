"""Sigmoid focal loss (Lin et al., 2017) and quality focal loss (Li et al.,
GFL, 2020), on probabilities or logits.

Both run in float32 with autocast off: binary cross entropy on
probabilities is refused under autocast and loses precision in half
precision (MMDetection issue 10203). Shapes: M samples, C classes.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from tood.registry import MODELS
from .reduction import WeightedLoss


def _one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """(M,) labels with ``num_classes`` as background -> (M, C) float."""
    return F.one_hot(labels, num_classes + 1)[:, :num_classes].float()


def _bce_and_focal(pred: Tensor, target: Tensor, activated: bool,
                   exponent: float) -> Tuple[Tensor, Tensor]:
    """Elementwise BCE of (M, C) probabilities or logits towards ``target``
    and the focal factor |target - p|^exponent.

    On probabilities torch clamps each log at -100, so p = 0 or 1 stays
    finite.
    """
    bce = (F.binary_cross_entropy if activated else
           F.binary_cross_entropy_with_logits)(pred, target, reduction='none')
    prob = pred if activated else pred.sigmoid()
    return bce, (target - prob).abs().pow(exponent)


@MODELS.register_module()
class FocalLoss(WeightedLoss):
    """Sigmoid focal loss with hard labels, summed over classes.

    Args:
        activated: ``pred`` holds probabilities (True) or logits (False).
        gamma: focusing exponent.
        alpha: weight of the positive term; negatives get ``1 - alpha``.
        loss_weight: multiplies the reduced loss.
    """

    def __init__(self, activated: bool = True, gamma: float = 2.0,
                 alpha: float = 0.25, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.activated, self.gamma, self.alpha = activated, gamma, alpha

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        """(M, C) probabilities or logits, (M,) labels in [0, C] (C is
        background) -> (M, C); weights are (M,) or (M, C)."""
        onehot = _one_hot(target, pred.size(1))
        # (1 - p_t)^gamma == |t - p|^gamma for hard targets t.
        bce, focal = _bce_and_focal(pred, onehot, self.activated, self.gamma)
        alpha_t = self.alpha * onehot + (1 - self.alpha) * (1 - onehot)
        return bce * alpha_t * focal


@MODELS.register_module()
class QualityFocalLoss(WeightedLoss):
    """Quality focal loss: focal loss towards a soft target at the positive's
    class, summed over classes (GFL; TOOD eq. 11 with the target t-hat).

    Per element: BCE(p, 0) * p^beta, except at a positive's class:
    BCE(p, score) * |score - p|^beta.

    Args:
        activated: ``pred`` holds probabilities (True) or logits (False).
        beta: focusing exponent.
        loss_weight: multiplies the reduced loss.
    """

    def __init__(self, activated: bool = True, beta: float = 2.0,
                 loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.activated, self.beta = activated, beta

    def elementwise(self, pred: Tensor, target: Tuple[Tensor, Tensor]
                    ) -> Tensor:
        """(M, C) probabilities or logits and ``(labels, scores)``: (M,)
        labels in [0, C] (C is background) and (M,) soft targets of the
        labelled class -> (M, C)."""
        labels, scores = target
        # Soft target: the score at the positive's class, 0 elsewhere.
        # It is a target, so no gradient flows into it.
        soft = torch.where(_one_hot(labels, pred.size(1)) > 0,
                           scores.detach().float()[:, None], 0.0)
        # |0 - p| = p on negatives, so one expression covers both cases.
        bce, focal = _bce_and_focal(pred, soft, self.activated, self.beta)
        return bce * focal
