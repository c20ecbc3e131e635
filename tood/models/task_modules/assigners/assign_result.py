"""What the ATSS and task-aligned assigners share: their batched output and
the rule that settles priors claimed by several GTs."""
from dataclasses import dataclass
from typing import Tuple

import torch
from torch import Tensor

from tood.structures import PaddedGT


@dataclass
class AssignResult:
    """Which GT each prior of each image is assigned to.

    B images, N priors (all levels concatenated), G padded GT slots per image.

    Attributes:
        gt_index: (B, N) long, index into the image's GT slots [0, G);
            -1 for background.
        fg_mask: (B, N) bool, ``gt_index >= 0``.
        overlaps: (B, N) float, IoU of the assigned (box, GT) pair: the
            prior's anchor box for ATSS, the predicted box for TAL (u);
            0 for background.
        metrics: (B, N) float, soft classification target of the assigned
            pair: the normalised alignment t-hat for TAL, the IoU for ATSS;
            0 for background.
    """
    gt_index: Tensor
    fg_mask: Tensor
    overlaps: Tensor
    metrics: Tensor

    def targets(self, gt: PaddedGT, num_classes: int) -> Tuple[Tensor, Tensor]:
        """(B, N) labels, ``num_classes`` for background, and (B, N, 4) the
        assigned GT boxes (meaningless on background)."""
        pick = self.gt_index.clamp(min=0)
        labels = gt.labels.gather(1, pick).where(self.fg_mask, num_classes)
        return labels, gt.bboxes.gather(1, pick[..., None].expand(-1, -1, 4))


def resolve_claims(positive: Tensor, key: Tensor, cand_idx: Tensor,
                   num_priors: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Give each prior claimed by several GTs to the claim with the largest
    ``key``; ties go to the lowest GT index, as an argmax over GTs would.

    Args:
        positive: (B, G, k) which candidate pairs claim their prior.
        key: (B, G, k) float, what decides between claims.
        cand_idx: (B, G, k) the prior index of each candidate pair.
        num_priors: N.
    Returns:
        (B, N) GT slot of each prior, -1 where unclaimed; (B, G, k) the
        pairs that won; (B, N) the winning key (-inf where unclaimed).
    """
    B, G, k = positive.shape
    key = key.masked_fill(~positive, float('-inf')).reshape(B, G * k)
    flat_idx = cand_idx.reshape(B, G * k)
    best = key.new_full((B, num_priors), float('-inf')).scatter_reduce_(
        1, flat_idx, key, 'amax')
    wins = positive & (key == best.gather(1, flat_idx)).view(B, G, k)
    g_index = torch.arange(G, device=key.device)[None, :, None]
    winner = torch.full((B, num_priors), G, device=key.device).scatter_reduce_(
        1, flat_idx, torch.where(wins, g_index, G).reshape(B, G * k), 'amin')
    final = wins & (winner.gather(1, flat_idx).view(B, G, k) == g_index)
    return torch.where(winner < G, winner, -1), final, best
