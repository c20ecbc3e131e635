"""A test-only hook that records which assigner each training step ran:
for every call of the criterion's ATSS warm-up assigner or of its TAL
assigner, the iteration and 'ATSS' or 'TAL', into
``work_dir/phases_rank{rank}.json`` after training.

It wraps the assigners' ``assign`` methods, not the criterion's
``warming_up()`` decision, so a criterion that decides right and then
assigns with the other assigner is caught."""
import json
import os.path as osp

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from tood.registry import HOOKS


@HOOKS.register_module()
class PhaseRecorderHook(Hook):

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        criterion = model.bbox_head.criterion
        self.calls = []
        for assigner, name in ((criterion.initial_assigner, 'ATSS'),
                               (criterion.assigner, 'TAL')):
            assigner.assign = self.recording(runner, assigner.assign, name)

    def recording(self, runner, assign, name):

        def recorded(*args, **kwargs):
            self.calls.append([runner.iter, name])
            return assign(*args, **kwargs)

        return recorded

    def after_train(self, runner) -> None:
        path = osp.join(runner.work_dir, f'phases_rank{get_rank()}.json')
        with open(path, 'w') as f:
            json.dump(self.calls, f)
