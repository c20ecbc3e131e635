"""Tell the head which epoch it is in."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from tood.registry import HOOKS


@HOOKS.register_module()
class SetEpochInfoHook(Hook):
    """Set ``model.bbox_head.epoch`` to the runner's (0-based) epoch.

    TOODHead trains with the ATSS assigner for its first ``initial_epoch``
    epochs and with task-aligned assignment afterwards; it reads the epoch
    from this attribute. Setting it before every epoch keeps the switch right
    under DDP (the hook reaches through the wrapper) and after ``--resume``
    (the runner restores its epoch before the first epoch starts).
    """

    def before_train_epoch(self, runner) -> None:
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        model.bbox_head.epoch = runner.epoch
