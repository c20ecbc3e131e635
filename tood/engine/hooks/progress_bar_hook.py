"""A progress bar over the test set."""
import sys
from typing import Optional, Sequence

from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.utils import ProgressBar

from tood.registry import HOOKS


@HOOKS.register_module()
class TestProgressBarHook(Hook):
    """Draw a bar of images done over the whole test set on rank 0.

    mmengine's logger only prints a line every ``interval`` iterations;
    ``tools/test.py`` adds this hook so a long evaluation shows its progress
    and ETA continuously. Under DDP every rank handles its own share, so rank
    0 counts its images times the world size.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._bar: Optional[ProgressBar] = None

    def before_test_epoch(self, runner) -> None:
        rank, _ = get_dist_info()
        if rank == 0:
            self._bar = ProgressBar(
                len(runner.test_dataloader.dataset), file=sys.stdout)

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        if self._bar is None:
            return
        _, world_size = get_dist_info()
        done = len(outputs) * world_size
        done = min(done, self._bar.task_num - self._bar.completed)
        if done > 0:
            self._bar.update(done)
        if self._bar.completed >= self._bar.task_num:
            # End the line before the metrics are logged.
            self._finish()

    def after_test_epoch(self, runner, metrics=None) -> None:
        if self._bar is not None:
            self._finish()

    def _finish(self) -> None:
        sys.stdout.write('\n')
        sys.stdout.flush()
        self._bar = None
