"""tools/train.py with test-only additions chosen by environment variables.

TOOD_TEST_KILL_AT=N: SIGKILL the process right after training iteration N
    (1-based, counted over the whole run), as a crash or an OOM killer would.
TOOD_TEST_DUMP_VAL=PATH: also dump the validation predictions to PATH.
TOOD_TEST_RECORD_NORMALISERS=1: write this process's value of every loss
    normaliser of the task-aligned criterion (before it is averaged over
    processes and clamped) to ``work_dir/normalisers_rank{rank}.json``.
"""
import json
import os
import os.path as osp
import signal
import sys

from mmengine.hooks import Hook

from tood.registry import HOOKS

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'tools'))
import train  # noqa: E402


@HOOKS.register_module()
class KillAtIterHook(Hook):
    priority = 'LOWEST'

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if runner.iter + 1 == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class NormaliserRecorderHook(Hook):
    """Records ``[iteration, this process's value]`` for every
    ``global_normaliser`` call of ``TaskAlignedCriterion``."""

    def before_train(self, runner) -> None:
        from tood.models.criteria import task_aligned
        normaliser = task_aligned.global_normaliser
        self.calls = []

        def recorded(value):
            self.calls.append([runner.iter, value.item()])
            return normaliser(value)

        task_aligned.global_normaliser = recorded

    def after_train(self, runner) -> None:
        from mmengine.dist import get_rank
        path = osp.join(runner.work_dir, f'normalisers_rank{get_rank()}.json')
        with open(path, 'w') as f:
            json.dump(self.calls, f)


def build_config(args):
    cfg, messages = original_build_config(args)
    if 'TOOD_TEST_KILL_AT' in os.environ:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(
                type='KillAtIterHook',
                iteration=int(os.environ['TOOD_TEST_KILL_AT']))
        ]
    if os.environ.get('TOOD_TEST_RECORD_NORMALISERS') == '1':
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='NormaliserRecorderHook')
        ]
    if 'TOOD_TEST_DUMP_VAL' in os.environ:
        evaluators = cfg.val_evaluator
        if isinstance(evaluators, dict):
            evaluators = [evaluators]
        cfg.val_evaluator = list(evaluators) + [
            dict(
                type='DumpResults',
                out_file_path=os.environ['TOOD_TEST_DUMP_VAL'])
        ]
    return cfg, messages


original_build_config = train.build_config
train.build_config = build_config

if __name__ == '__main__':
    train.main()
