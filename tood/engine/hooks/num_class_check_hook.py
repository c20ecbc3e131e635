"""Check that the model predicts as many classes as the dataset has."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from tood.errors import ConfigError
from tood.registry import HOOKS


@HOOKS.register_module()
class NumClassCheckHook(Hook):
    """Raise :class:`ConfigError` before training, validation or testing
    when a module's ``num_classes`` differs from the number of classes of
    the dataset about to be used.

    A mismatch does not fail by itself: a head with more outputs trains
    classes that never occur, one with fewer crashes deep in the loss or
    mislabels detections at evaluation.
    """

    def before_train(self, runner) -> None:
        self._check(runner, runner.train_dataloader, 'train')

    def before_val(self, runner) -> None:
        self._check(runner, runner.val_dataloader, 'val')

    def before_test(self, runner) -> None:
        self._check(runner, runner.test_dataloader, 'test')

    @staticmethod
    def _check(runner, dataloader, stage: str) -> None:
        dataset = dataloader.dataset
        classes = getattr(dataset, 'metainfo', {}).get('classes')
        if classes is None:
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        for name, module in model.named_modules():
            num_classes = getattr(module, 'num_classes', None)
            if not isinstance(num_classes, int) or num_classes == len(
                    classes):
                continue
            source = getattr(dataset, 'ann_file', '') or type(dataset).__name__
            raise ConfigError(
                f'model.{name}.num_classes is {num_classes} but the {stage} '
                f'dataset ({source}) has {len(classes)} classes: '
                f'{tuple(classes)}. Set model.{name}.num_classes='
                f'{len(classes)}, or select {num_classes} classes with the '
                "dataset's metainfo=dict(classes=(...)).")
