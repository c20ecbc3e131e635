"""mmengine's CheckpointHook, made safe to kill at any moment."""
import os.path as osp

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook
from mmengine.hooks import EMAHook as MMEngineEMAHook
from mmengine.model import is_model_wrapper

from tood.engine.checkpoint import atomic_backend_args, atomic_write
from tood.errors import NonFiniteLossError
from tood.registry import HOOKS

from .loss_check_hook import last_checkpoint_note


def non_finite_tensors(model: torch.nn.Module) -> list:
    """Names of the floating-point parameters and buffers of ``model``
    that hold a NaN or an infinity."""
    return [
        name for name, tensor in model.state_dict().items()
        if tensor.is_floating_point() and not bool(torch.isfinite(
            tensor).all())
    ]


@HOOKS.register_module()
class CheckpointHook(MMEngineCheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments) that never leaves
    the work dir without a usable checkpoint.

    Registered under mmengine's name in the tood scope, so configs'
    ``default_hooks.checkpoint`` build it. Differences:

    * the checkpoint file is written atomically, then ``last_checkpoint``
      is, and only then is the checkpoint that ``max_keep_ckpts`` retires
      deleted; mmengine deletes first, so with ``max_keep_ckpts=1`` a kill
      while saving left nothing to resume from. Without ``backend_args``
      (and with a local ``out_dir``) the checkpoints go through
      ``tood.engine.checkpoint.AtomicLocalBackend`` (``backend_args=
      dict(backend='atomic_local')``); a backend given in the config is
      used as it is;
    * weights holding NaN or infinity are not saved: training stops with
      :class:`NonFiniteLossError` and the previous checkpoint stays the
      last one;
    * ``--resume`` of a checkpoint written with an ``EMAHook`` by a run
      without one continues from the raw weights, not the averaged ones
      (:meth:`after_load_checkpoint`).

    The first two replace mmengine's private ``_save_checkpoint_with_step``
    (no public method saves in between deciding and retiring), which is
    why ``mmengine`` is pinned to 0.10.7 (``requirements.txt``);
    ``tests/engine/test_faults.py`` checks the method still has the
    signature replaced here.
    """

    def before_train(self, runner) -> None:
        out_dir = self.out_dir or runner.work_dir
        if (self.backend_args is None and self.file_client_args is None
                and '://' not in str(out_dir)):
            # Chosen here rather than in __init__: out_dir is only known
            # now, and a remote one keeps mmengine's backend for its prefix.
            self.backend_args = atomic_backend_args()
        super().before_train(runner)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Resume a checkpoint written with an ``EMAHook`` from its raw
        weights when no EMA hook runs now.

        Such a checkpoint keeps the averaged weights in ``state_dict`` (for
        inference) and the raw ones in ``ema_state_dict`` under
        ``module.``; the EMA hook swaps them back when it resumes. Without
        it, training would go on from the averaged weights with the
        optimizer state of the raw ones. Loading for inference or
        fine-tuning (``load_from`` without resume) keeps the averaged
        weights.
        """
        if not runner.cfg.get('resume') or \
                'ema_state_dict' not in checkpoint or any(
                isinstance(hook, MMEngineEMAHook) for hook in runner.hooks):
            return
        state = checkpoint['state_dict']
        for key, value in checkpoint['ema_state_dict'].items():
            if key.startswith('module.') and key[7:] in state:
                state[key[7:]] = value
        runner.logger.info(
            'The checkpoint was written with an EMAHook, which this run does '
            'not have: training resumes from its raw weights and the '
            'averaged ones are dropped.')

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        bad = non_finite_tensors(model)
        if bad:
            raise NonFiniteLossError(
                f'Training stopped before saving at iteration {runner.iter}'
                f' (epoch {runner.epoch + 1}): the weights hold NaN or '
                f'infinite values ({", ".join(bad[:5])}'
                f'{", ..." if len(bad) > 5 else ""}). '
                f'{last_checkpoint_note(runner)}')

        retired = None
        if self.max_keep_ckpts > 0 and (not self.keep_ckpt_ids
                                        or self.keep_ckpt_ids[-1] != step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                retired = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            # Saved in the checkpoint, so that a resumed run retires the
            # same files.
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)

        if not is_main_process():
            return
        # The work dir is always local (mmengine makes it with os.makedirs),
        # whatever backend the checkpoints use.
        atomic_write(
            osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        if retired is not None:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(retired))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                # DeepSpeed saves checkpoints as folders.
                self.file_backend.rmtree(path)
