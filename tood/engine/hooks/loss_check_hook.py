"""Stop training at the first loss that is not finite."""
from typing import Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook

from tood.errors import NonFiniteLossError
from tood.registry import HOOKS


def last_checkpoint_note(runner) -> str:
    last = runner.message_hub.get_info('last_ckpt')
    if last is None:
        return 'No checkpoint had been written yet.'
    return (f'Nothing was saved after it; the last checkpoint, {last}, is '
            'intact: resume from it with --resume after fixing the cause.')


@HOOKS.register_module()
class LossCheckHook(Hook):
    """Average the logged loss terms over processes, and stop training with
    :class:`NonFiniteLossError` when one is NaN or infinite.

    It runs first after every iteration (priority HIGHEST), so no other
    hook logs, counts or checkpoints the bad iteration: the last checkpoint
    on disk stays the last good one. The message names the iteration and
    every loss term, so the one that diverged shows.

    Every process raises together: the terms are averaged over processes
    (one small all-reduce) before the check, so a NaN on one rank stops
    all of them instead of leaving the others waiting. The average is also
    what the log then shows: the loss of the whole batch, as with one
    process, rather than rank 0's share of it.
    """

    priority = 'HIGHEST'

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if not outputs:
            return
        names = [
            name for name, value in outputs.items()
            if isinstance(value, torch.Tensor) and value.numel() == 1
        ]
        if not names:
            return
        values = torch.stack(
            [outputs[name].detach().float().reshape(()) for name in names])
        if get_world_size() > 1:
            all_reduce(values, op='mean')
            for name, value in zip(names, values):
                outputs[name] = value
        if bool(torch.isfinite(values).all()):
            return
        terms = ', '.join(f'{name}={value.item():.4g}'
                          for name, value in zip(names, values))
        raise NonFiniteLossError(
            f'Training stopped: the loss is not finite at iteration '
            f'{runner.iter + 1} (epoch {runner.epoch + 1}, batch '
            f'{batch_idx + 1}): {terms}. {last_checkpoint_note(runner)} '
            'Usual causes: a learning rate too high for the batch size '
            '(lower optim_wrapper.optimizer.lr, or use --auto-scale-lr), '
            'too short a warm-up, or float16 overflow with --amp.')
