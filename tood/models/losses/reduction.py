"""How elementwise losses become one number: weighting, summing and the
normalisers, averaged over processes."""
from typing import Optional, Union

from mmengine.dist import all_reduce
from torch import Tensor


def weight_reduce_loss(loss: Tensor,
                       weight: Optional[Tensor] = None,
                       avg_factor: Optional[Union[float, Tensor]] = None
                       ) -> Tensor:
    """Weight an elementwise loss, sum it, and divide by ``avg_factor``.

    Args:
        loss: (M, ...) elementwise loss of M samples.
        weight: (M,) per-sample weight, or the shape of ``loss``.
        avg_factor: the divisor; None means the number of samples M, i.e.
            the mean over samples of their (class-summed) loss.
    """
    if weight is not None:
        weight = weight.float()
        loss = loss * weight.reshape(weight.shape + (1, ) *
                                     (loss.dim() - weight.dim()))
    if avg_factor is None:
        avg_factor = max(loss.size(0), 1)
    return loss.sum() / avg_factor


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
