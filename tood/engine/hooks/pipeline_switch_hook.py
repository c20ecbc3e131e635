"""Switch the training pipeline at a given epoch, e.g. to turn mosaic and
mixup off for the last epochs (MMDetection's ``PipelineSwitchHook``)."""
from typing import List, Optional, Sequence

from mmengine.dataset import Compose
from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop

from tood.datasets.wrappers import pipeline_datasets
from tood.errors import ConfigError
from tood.registry import HOOKS


@HOOKS.register_module()
class PipelineSwitchHook(Hook):
    """From epoch ``switch_epoch`` (counted from 0) on, train with
    ``switch_pipeline`` instead of the dataset's pipeline.

    Mosaic and mixup off for the last N of ``max_epochs`` epochs::

        custom_hooks = [
            dict(type='PipelineSwitchHook',
                 switch_epoch=max_epochs - N,
                 switch_pipeline=train_pipeline_without_mosaic)
        ]

    The epoch is the runner's (``runner.epoch`` before each training
    epoch), so a run resumed at or after ``switch_epoch`` trains with the
    new pipeline from its first epoch. Datasets inside wrappers
    (``ClassBalancedDataset``, ``RepeatDataset``, ``ConcatDataset``) are
    switched, not the wrapper. Dataloader workers hold a copy of the
    dataset made when they started: persistent workers
    (``persistent_workers=True``) are shut down at the switch, so that the
    next epoch starts new ones with the new pipeline (as workers that are
    not persistent do every epoch).

    Args:
        switch_epoch: the first epoch (0-based, as ``runner.epoch``) of
            the new pipeline.
        switch_pipeline: transform configs, as a dataset's ``pipeline``.
    """

    def __init__(self, switch_epoch: int,
                 switch_pipeline: Sequence[dict]) -> None:
        if not isinstance(switch_epoch, int) or switch_epoch < 0:
            raise ConfigError('PipelineSwitchHook: switch_epoch must be an '
                              f'epoch index >= 0, got {switch_epoch!r}')
        self.switch_epoch = switch_epoch
        self.switch_pipeline: List[dict] = list(switch_pipeline)
        self._pipeline: Optional[Compose] = None
        self._switched = False

    def before_train(self, runner) -> None:
        if isinstance(runner.train_loop, IterBasedTrainLoop):
            raise ConfigError(
                'PipelineSwitchHook switches at an epoch, but the train loop '
                'counts iterations (train_cfg has max_iters): use an '
                'epoch-based train_cfg (max_epochs) or drop the hook')
        # Build now, in the run's registry scope, so that a wrong transform
        # stops the run before it trains rather than at the switch.
        self._pipeline = Compose(self.switch_pipeline)
        if not list(pipeline_datasets(runner.train_dataloader.dataset)):
            raise ConfigError(
                'PipelineSwitchHook: train_dataloader.dataset '
                f'({type(runner.train_dataloader.dataset).__name__}) has no '
                'pipeline to switch, nor a dataset inside that has one')
        max_epochs = getattr(runner, 'max_epochs', None)
        if isinstance(max_epochs, int) and self.switch_epoch >= max_epochs:
            runner.logger.warning(
                f'PipelineSwitchHook: switch_epoch {self.switch_epoch} is '
                f'not below max_epochs {max_epochs}; the pipeline is never '
                'switched')

    def before_train_epoch(self, runner) -> None:
        if self._switched or runner.epoch < self.switch_epoch:
            return
        loader = runner.train_dataloader
        for dataset in pipeline_datasets(loader.dataset):
            dataset.pipeline = self._pipeline
        # torch keeps the iterator, and with it the worker processes and
        # their copies of the dataset, between epochs when the workers are
        # persistent; without one the next epoch starts new workers.
        iterator = getattr(loader, '_iterator', None)
        if iterator is not None:
            shutdown = getattr(iterator, '_shutdown_workers', None)
            if shutdown is not None:
                shutdown()
            loader._iterator = None
        self._switched = True
        names = [str(t.get('type')) for t in self.switch_pipeline]
        runner.logger.info(f'PipelineSwitchHook: from epoch {runner.epoch} '
                           f'on, the train pipeline is {names}')
