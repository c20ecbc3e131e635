"""The recent pipeline results that CachedMosaic and CachedMixUp draw their
extra images from (RTMDet's way), instead of loading more images from the
dataset: each image is decoded once, which counts where the CPU feeds the
training."""
from typing import Dict, List

import numpy as np

from .instances import get_instances


class ResultsCache:
    """Up to ``max_size`` images with their boxes, the newest added last.

    Each process (each dataloader worker) has its own, filled by the images
    its sampler gives it; with ``ClassBalancedDataset`` those are already
    drawn by their repeat factors, so the extra images are too.

    Args:
        max_size: how many results are kept.
        random_pop: when full, drop a random entry (else the oldest).
    """

    def __init__(self, max_size: int, random_pop: bool = True) -> None:
        self.max_size = max_size
        self.random_pop = random_pop
        self.entries: List[Dict[str, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self.entries)

    def push(self, results: dict) -> None:
        """Keep a copy of the image and its boxes (later transforms may
        change the arrays of ``results`` in place)."""
        entry = {
            key: value.copy()
            for key, value in get_instances(results).items()
        }
        entry['img'] = results['img'].copy()
        self.entries.append(entry)
        if len(self.entries) > self.max_size:
            index = (
                np.random.randint(len(self.entries))
                if self.random_pop else 0)
            self.entries.pop(index)

    def draw(self) -> Dict[str, np.ndarray]:
        """A uniformly random entry (not copied: read it, do not change
        it)."""
        return self.entries[np.random.randint(len(self.entries))]
