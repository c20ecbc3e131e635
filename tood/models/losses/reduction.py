"""How elementwise losses become one number: weighting, summing and the
normalisers, averaged over processes."""
from typing import Any, Optional, Union

import torch
from mmengine.dist import all_reduce
from torch import Tensor, nn


class WeightedLoss(nn.Module):
    """An elementwise loss, weighted, summed and divided by ``avg_factor``.

    Subclasses define ``elementwise(pred, target)``; it runs on float32
    ``pred`` with autocast off (binary cross entropy on probabilities is
    refused under autocast and loses precision in half precision,
    MMDetection issue 10203).

    Args:
        loss_weight: multiplies the reduced loss.
    """
    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred: Tensor, target: Any,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None) -> Tensor:
        """
        Args:
            pred: (M, ...) predictions of M samples.
            target: what the subclass's ``elementwise`` takes.
            weight: (M,) per-sample weight, or the shape of the elementwise
                loss.
            avg_factor: the divisor; None means the number of samples M,
                i.e. the mean over samples of their (class-summed) loss.
        Returns:
            Scalar float32 loss.
        """
        with torch.autocast(device_type=pred.device.type, enabled=False):
            loss = self.elementwise(pred.float(), target)
            if weight is not None:
                extra_dims = (1, ) * (loss.dim() - weight.dim())
                loss = loss * weight.float().reshape(weight.shape + extra_dims)
            if avg_factor is None:
                avg_factor = max(loss.size(0), 1)
            return self.loss_weight * (loss.sum() / avg_factor)


def global_normaliser(value: Tensor) -> Tensor:
    """A loss normaliser (a number of positives, a sum of weights) averaged
    over processes and clamped to at least 1, as in the published code; a
    constant for autograd.

    Averaging keeps every process's loss on one scale, so DDP's averaged
    gradients equal those of one process with the whole batch.
    """
    value = value.detach().clone().float()
    all_reduce(value, op='mean')
    return value.clamp(min=1)
