"""Sigmoid focal loss (Lin et al., 2017) and quality focal loss (Li et al.,
GFL, 2020), on probabilities or logits.

Both run in float32 with autocast off: binary cross entropy on
probabilities is refused under autocast and loses precision in half
precision (MMDetection issue 10203). Shapes: M samples, C classes.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tood.registry import MODELS
from .reduction import weight_reduce_loss


def _one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """(M,) labels with ``num_classes`` as background -> (M, C) float."""
    return F.one_hot(labels, num_classes + 1)[:, :num_classes].float()


def _probability_and_bce(pred: Tensor, target: Tensor,
                         activated: bool) -> Tuple[Tensor, Tensor]:
    """Probabilities and elementwise BCE of (M, C) probabilities or logits.

    On probabilities torch clamps each log at -100, so p = 0 or 1 stays
    finite.
    """
    if activated:
        return pred, F.binary_cross_entropy(pred, target, reduction='none')
    return pred.sigmoid(), F.binary_cross_entropy_with_logits(
        pred, target, reduction='none')


@MODELS.register_module()
class FocalLoss(nn.Module):
    """Sigmoid focal loss with hard labels, summed over classes.

    Args:
        activated: ``pred`` holds probabilities (True) or logits (False).
        gamma: focusing exponent.
        alpha: weight of the positive term; negatives get ``1 - alpha``.
        loss_weight: multiplies the reduced loss.
    """

    def __init__(self, activated: bool = True, gamma: float = 2.0,
                 alpha: float = 0.25, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.activated, self.gamma, self.alpha = activated, gamma, alpha
        self.loss_weight = loss_weight

    def forward(self, pred: Tensor, target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None) -> Tensor:
        """(M, C) probabilities or logits, (M,) labels in [0, C] (C is
        background), (M,) or (M, C) weights -> scalar float32 loss; a None
        ``avg_factor`` averages over the M samples."""
        with torch.autocast(device_type=pred.device.type, enabled=False):
            pred = pred.float()
            onehot = _one_hot(target, pred.size(1))
            prob, bce = _probability_and_bce(pred, onehot, self.activated)
            # (1 - p_t)^gamma == |t - p|^gamma for hard targets t.
            focal = (onehot - prob).abs().pow(self.gamma)
            alpha_t = self.alpha * onehot + (1 - self.alpha) * (1 - onehot)
            return self.loss_weight * weight_reduce_loss(
                bce * alpha_t * focal, weight, avg_factor)


@MODELS.register_module()
class QualityFocalLoss(nn.Module):
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
        super().__init__()
        self.activated, self.beta = activated, beta
        self.loss_weight = loss_weight

    def forward(self, pred: Tensor, target: Tuple[Tensor, Tensor],
                weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None) -> Tensor:
        """(M, C) probabilities or logits and ``(labels, scores)``: (M,)
        labels in [0, C] (C is background) and (M,) soft targets of the
        labelled class -> scalar float32 loss."""
        labels, scores = target
        with torch.autocast(device_type=pred.device.type, enabled=False):
            pred = pred.float()
            onehot = _one_hot(labels, pred.size(1))
            # Soft target: the score at the positive's class, 0 elsewhere.
            # It is a target, so no gradient flows into it.
            soft = torch.where(onehot > 0, scores.detach().float()[:, None],
                               0.0)
            prob, bce = _probability_and_bce(pred, soft, self.activated)
            # |0 - p| = p on negatives, so one expression covers both cases.
            return self.loss_weight * weight_reduce_loss(
                bce * (soft - prob).abs().pow(self.beta), weight, avg_factor)
