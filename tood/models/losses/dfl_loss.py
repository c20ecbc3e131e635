"""Distribution focal loss (Li et al., "Generalized Focal Loss", NeurIPS
2020), the box-side loss of GFL."""
import torch.nn.functional as F
from torch import Tensor

from tood.registry import MODELS
from .reduction import WeightedLoss


@MODELS.register_module()
class DistributionFocalLoss(WeightedLoss):
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

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        """(M, R + 1) logits over the bins of M box sides, (M,) float
        distances in [0, R] -> (M,); weights are (M,) per side."""
        target = target.float()
        # A target of exactly R puts all its mass on bin R: taking R - 1 as
        # its left bin keeps the right bin inside the range.
        left = target.floor().long().clamp(0, pred.size(1) - 2)
        right = left + 1
        return (F.cross_entropy(pred, left, reduction='none') *
                (right.float() - target) +
                F.cross_entropy(pred, right, reduction='none') *
                (target - left.float()))
