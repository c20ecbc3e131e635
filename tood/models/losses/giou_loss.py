"""Generalized IoU loss (Rezatofighi et al., 2019)."""
from typing import Optional, Union

import torch
from torch import Tensor, nn

from tood.registry import MODELS
from tood.structures import box_giou
from .reduction import weight_reduce_loss


@MODELS.register_module()
class GIoULoss(nn.Module):
    """1 - GIoU of corresponding boxes, in [0, 2].

    Inverted predicted boxes count as empty (widths clamped at 0), so the
    loss never goes negative (MMDetection PR 7567).

    Args:
        loss_weight: multiplies the reduced loss.
        eps: floor of the union and enclosing areas.
    """

    def __init__(self, loss_weight: float = 1.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.loss_weight, self.eps = loss_weight, eps

    def forward(self, pred: Tensor, target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None) -> Tensor:
        """
        Args:
            pred: (M, 4) predicted boxes, xyxy.
            target: (M, 4) target boxes, xyxy.
            weight: (M,) per-box weight.
            avg_factor: normaliser; None averages over the M boxes.
        Returns:
            Scalar float32 loss.
        """
        if pred.size(0) == 0:
            # No boxes: zero that still reaches every parameter of ``pred``.
            return pred.sum().float() * 0
        with torch.autocast(device_type=pred.device.type, enabled=False):
            loss = 1 - box_giou(pred.float(), target.float(), self.eps)
            return self.loss_weight * weight_reduce_loss(
                loss, weight, avg_factor)
