"""The batched output shared by the ATSS and task-aligned assigners."""
from dataclasses import dataclass

from torch import Tensor


@dataclass
class AssignResult:
    """Which GT each prior of each image is assigned to.

    B images, N priors (all levels concatenated), G padded GT slots per image.

    Attributes:
        gt_index: (B, N) long, index into the image's GT slots [0, G);
            -1 for background.
        fg_mask: (B, N) bool, ``gt_index >= 0``.
        overlaps: (B, N) float, IoU of the assigned (box, GT) pair: the
            prior's anchor box for ATSS, the predicted box for TAL; 0 for
            background.
        metrics: (B, N) float, soft classification target of the assigned
            pair: the normalised alignment t-hat for TAL, the IoU for ATSS;
            0 for background.
    """
    gt_index: Tensor
    fg_mask: Tensor
    overlaps: Tensor
    metrics: Tensor
