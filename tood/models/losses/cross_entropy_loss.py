"""Binary cross entropy on logits, under MMDetection's name and config keys
(``CrossEntropyLoss`` with ``use_sigmoid=True``): ATSS's centerness loss."""
import torch.nn.functional as F
from torch import Tensor

from tood.registry import MODELS
from .reduction import WeightedLoss


@MODELS.register_module()
class CrossEntropyLoss(WeightedLoss):
    """Sigmoid binary cross entropy towards soft targets in [0, 1].

    Args:
        use_sigmoid: must be True; the key is kept so that MMDetection
            configs read unchanged (nothing here needs the softmax form).
        loss_weight: multiplies the reduced loss.
    """

    def __init__(self, use_sigmoid: bool = True,
                 loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        if not use_sigmoid:
            raise ValueError('only the sigmoid (binary) cross entropy is '
                             'implemented: set use_sigmoid=True')

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        """(M,) or (M, C) logits, the same shape of float targets in [0, 1]
        -> the same shape; weights are (M,)."""
        return F.binary_cross_entropy_with_logits(
            pred, target.float(), reduction='none')
