"""Exponential moving average of the weights: mmengine's EMAHook with its
settings checked when it is built.

How the averaged weights travel (mmengine 0.10.7's ``EMAHook``, which
this class keeps as it is):

* training updates the copy in ``ema_model`` after every iteration;
* validation and testing swap the averaged weights into the model for the
  epoch (``before/after_val_epoch``, ``before/after_test_epoch``);
* a checkpoint's ``state_dict`` holds the averaged weights and its
  ``ema_state_dict`` the raw ones (``before_save_checkpoint``), so
  ``tools/test.py``, ``init_detector`` and an ONNX export read the
  averaged weights without knowing about EMA;
* ``--resume`` swaps them back (``after_load_checkpoint``): training goes
  on from the raw weights and the average from the averaged ones.

tood's ``CheckpointHook`` resumes such a checkpoint from its raw weights
when the EMA hook is switched off; ``TrainingReportHook`` draws the
averaged model's predictions (:func:`averaged_model`).
"""
import inspect
from typing import Optional

from mmengine.hooks import EMAHook as MMEngineEMAHook
from torch import nn

from tood.errors import ConfigError
from tood.registry import HOOKS, MODELS


@HOOKS.register_module()
class EMAHook(MMEngineEMAHook):
    """mmengine's ``EMAHook`` (same arguments; registered under its name in
    the tood scope), which refuses bad settings when the runner builds it,
    naming the key, instead of failing when training starts.

    Args:
        ema_type: an averaging class of mmengine
            (``ExponentialMovingAverage``, ``MomentumAnnealingEMA``,
            ``StochasticWeightAverage``) or one registered in the tood
            scope.
        strict_load, begin_iter, begin_epoch: as mmengine's.
        **kwargs: arguments of ``ema_type`` (``momentum``, ``gamma``,
            ``interval``, ``update_buffers``).
    """

    def __init__(self,
                 ema_type: str = 'ExponentialMovingAverage',
                 strict_load: bool = False,
                 begin_iter: int = 0,
                 begin_epoch: int = 0,
                 **kwargs) -> None:
        check_ema_settings(ema_type, begin_iter, begin_epoch, kwargs)
        super().__init__(ema_type, strict_load, begin_iter, begin_epoch,
                         **kwargs)


def check_ema_settings(ema_type: str, begin_iter: int, begin_epoch: int,
                       kwargs: dict) -> None:
    """Raise :class:`ConfigError` naming the ``EMAHook`` key that cannot
    work."""
    averaging = MODELS.get(ema_type)
    if averaging is None:
        raise ConfigError(
            f'EMAHook: ema_type {ema_type!r} is not a registered averaging '
            'class; mmengine has ExponentialMovingAverage, '
            'MomentumAnnealingEMA and StochasticWeightAverage')
    taken = [
        name for name in inspect.signature(averaging).parameters
        if name != 'model'
    ]
    unknown = [key for key in kwargs if key not in taken]
    if unknown:
        raise ConfigError(
            f'EMAHook: {ema_type} does not take {", ".join(unknown)} '
            f'(it takes {", ".join(taken)})')
    momentum = kwargs.get('momentum')
    if momentum is not None and not 0 < momentum < 1:
        raise ConfigError(
            f'EMAHook: momentum must be in (0, 1), got {momentum!r}; it '
            'is the weight of the new weights in each update (about '
            '1 / the number of iterations averaged over)')
    if begin_iter and begin_epoch:
        raise ConfigError('EMAHook: set begin_iter or begin_epoch, not both')
    if begin_iter < 0 or begin_epoch < 0:
        raise ConfigError('EMAHook: begin_iter and begin_epoch must be >= 0')


def averaged_model(runner) -> Optional[nn.Module]:
    """The model holding the averaged weights of the runner's EMA hook (the
    weights the checkpoints hold), or None when no EMA hook runs.

    Outside a validation or test epoch this copy holds the averaged
    weights and the runner's model the raw ones.
    """
    for hook in runner.hooks:
        if isinstance(hook, MMEngineEMAHook) and hasattr(hook, 'ema_model'):
            return hook.ema_model.module
    return None
