"""The ground truth of a batch as padded tensors."""
from typing import Iterator, List, NamedTuple, Tuple

import torch
from torch import Tensor

from .det_data_sample import DetDataSample


class PaddedGT(NamedTuple):
    """Per-image GTs stacked into G slots per image (B images).

    G is the most GTs in one image, at least 1, so every tensor keeps its
    rank; ``valid`` marks the slots that hold a GT.
    """
    bboxes: Tensor  # (B, G, 4) float, xyxy in input pixels
    labels: Tensor  # (B, G) long
    valid: Tensor  # (B, G) bool

    @classmethod
    def from_samples(cls, data_samples: List[DetDataSample],
                     device: torch.device) -> 'PaddedGT':
        instances = [s.gt_instances for s in data_samples]
        B = len(instances)
        G = max([len(g) for g in instances] + [1])
        bboxes = torch.zeros(B, G, 4, device=device)
        labels = torch.zeros(B, G, dtype=torch.long, device=device)
        valid = torch.zeros(B, G, dtype=torch.bool, device=device)
        for i, g in enumerate(instances):
            n = len(g)
            bboxes[i, :n] = g.bboxes.to(device).float()
            labels[i, :n] = g.labels.to(device)
            valid[i, :n] = True
        return cls(bboxes, labels, valid)

    def slots_per_image(self) -> Iterator[Tuple[int, Tensor]]:
        """(b, the indices of image b's GT slots) for every image b that
        has GTs: what per-image work over the real GTs loops over."""
        for b, valid in enumerate(self.valid):
            slots = valid.nonzero().squeeze(1)
            if slots.numel() > 0:
                yield b, slots
