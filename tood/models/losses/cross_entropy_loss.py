"""Binary cross entropy on logits, under MMDetection's name and config keys
(``CrossEntropyLoss`` with ``use_sigmoid=True``): ATSS's centerness loss."""
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tood.registry import MODELS
from .reduction import weight_reduce_loss


@MODELS.register_module()
class CrossEntropyLoss(nn.Module):
    """Sigmoid binary cross entropy towards soft targets in [0, 1].

    Args:
        use_sigmoid: must be True; the key is kept so that MMDetection
            configs read unchanged (nothing here needs the softmax form).
        loss_weight: multiplies the reduced loss.
    """

    def __init__(self, use_sigmoid: bool = True,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if not use_sigmoid:
            raise ValueError('only the sigmoid (binary) cross entropy is '
                             'implemented: set use_sigmoid=True')
        self.loss_weight = loss_weight

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None) -> Tensor:
        """
        Args:
            pred: (M,) or (M, C) logits.
            target: same shape, float targets in [0, 1].
            weight: (M,) per-sample weight.
            avg_factor: normaliser; None averages over the M samples.
        Returns:
            Scalar float32 loss.
        """
        with torch.autocast(device_type=pred.device.type, enabled=False):
            loss = F.binary_cross_entropy_with_logits(
                pred.float(), target.float(), reduction='none')
            return self.loss_weight * weight_reduce_loss(
                loss, weight, avg_factor)
