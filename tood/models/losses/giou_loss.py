"""Generalized IoU loss (Rezatofighi et al., 2019)."""
from torch import Tensor

from tood.registry import MODELS
from tood.structures import box_giou
from .reduction import WeightedLoss


@MODELS.register_module()
class GIoULoss(WeightedLoss):
    """1 - GIoU of corresponding boxes, in [0, 2].

    Inverted predicted boxes count as empty (widths clamped at 0), so the
    loss never goes negative (MMDetection PR 7567). With no boxes the loss
    is a zero that still reaches every parameter of ``pred``.

    Args:
        loss_weight: multiplies the reduced loss.
        eps: floor of the union and enclosing areas.
    """

    def __init__(self, loss_weight: float = 1.0, eps: float = 1e-6) -> None:
        super().__init__(loss_weight)
        self.eps = eps

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        """(M, 4) predicted and (M, 4) target boxes, xyxy -> (M,); weights
        are (M,) per box."""
        return 1 - box_giou(pred, target.float(), self.eps)
