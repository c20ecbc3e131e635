"""Reseed the global random generators at the start of every epoch."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook

from tood.registry import HOOKS


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Seed Python's, numpy's and torch's global generators from the run's
    seed and the epoch before each training epoch.

    Random augmentations (RandomFlip, RandomResize) draw from these
    generators. Without this hook an epoch's draws depend on everything
    drawn before it in the process, so a run resumed from a checkpoint
    flips other images than the uninterrupted run did. With it, epoch
    ``e`` draws the same numbers however the run got there (the data order
    is already seeded per epoch by the sampler). DataLoader workers are
    seeded by mmengine from the seed and their id.
    """

    def before_train_epoch(self, runner) -> None:
        # runner.seed includes the rank when randomness.diff_rank_seed is
        # set, and is the checkpoint's seed after --resume.
        seed = int(
            np.random.SeedSequence([runner.seed, runner.epoch]).generate_state(
                1)[0])
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # all devices
