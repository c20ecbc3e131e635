"""A test-only hook that records which assignment each training step used:
for every iteration, whether the criterion was in the ATSS warm-up, into
``work_dir/phases_rank{rank}.json`` after training."""
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
        decide = criterion.warming_up
        self.phases = []

        def recorded() -> bool:
            warmup = decide()
            self.phases.append([runner.iter, warmup])
            return warmup

        criterion.warming_up = recorded

    def after_train(self, runner) -> None:
        path = osp.join(runner.work_dir, f'phases_rank{get_rank()}.json')
        with open(path, 'w') as f:
            json.dump(self.phases, f)
