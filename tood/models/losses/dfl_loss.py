"""Distribution focal loss (Li et al., "Generalized Focal Loss", NeurIPS
2020), the box-side loss of GFL."""
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tood.registry import MODELS
from .reduction import weight_reduce_loss


@MODELS.register_module()
class DistributionFocalLoss(nn.Module):
    """Cross entropy of a discretised distance towards its two nearest bins.

    A box side is predicted as a distribution over the integer distances
    0, 1, ..., R (R = ``reg_max``). A target distance y with neighbours
    y_l = floor(y) and y_r = y_l + 1 gives

        DFL = -((y_r - y) · log S(y_l) + (y - y_l) · log S(y_r)),

    S being the softmax over the R + 1 bins, so the loss is smallest when
    the distribution's mass sits on the two bins in those proportions.

    Args:
        loss_weight: multiplies the reduced loss.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None) -> Tensor:
        """
        Args:
            pred: (M, R + 1) logits over the bins of M box sides.
            target: (M,) float distances in [0, R].
            weight: (M,) per-side weight.
            avg_factor: normaliser; None averages over the M sides.
        Returns:
            Scalar float32 loss.
        """
        with torch.autocast(device_type=pred.device.type, enabled=False):
            pred = pred.float()
            target = target.float()
            reg_max = pred.size(1) - 1
            # A target of exactly R puts all its mass on bin R: taking
            # R - 1 as its left bin keeps the right bin inside the range.
            left = target.floor().long().clamp(0, reg_max - 1)
            right = left + 1
            weight_left = right.float() - target
            weight_right = target - left.float()
            loss = (
                F.cross_entropy(pred, left, reduction='none') * weight_left +
                F.cross_entropy(pred, right, reduction='none') * weight_right)
            return self.loss_weight * weight_reduce_loss(
                loss, weight, avg_factor)
