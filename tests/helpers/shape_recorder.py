"""A test-only hook that records, for every training iteration, the epoch
and the (height, width) of each image of its batch, into
``work_dir/shapes_rank{rank}.json`` after training."""
import json
import os.path as osp

from mmengine.dist import get_rank
from mmengine.hooks import Hook

from tood.registry import HOOKS


@HOOKS.register_module()
class ShapeRecorderHook(Hook):

    def before_train(self, runner) -> None:
        self.shapes = []

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        sizes = [list(img.shape[-2:]) for img in data_batch['inputs']]
        self.shapes.append([runner.epoch, sizes])

    def after_train(self, runner) -> None:
        path = osp.join(runner.work_dir, f'shapes_rank{get_rank()}.json')
        with open(path, 'w') as f:
            json.dump(self.shapes, f)
