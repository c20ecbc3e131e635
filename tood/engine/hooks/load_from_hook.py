"""Fine-tuning from a detector checkpoint with other classes (``load_from``).

mmengine loads ``load_from`` with ``strict=False``: a classifier of another
class count becomes a wall of "size mismatch" warnings and stays at its
initialisation, and so does any other tensor that does not fit. Here the
checkpoint is adapted before it is loaded:

* the classifier rows of the classes whose names match (ignoring case and
  separators: ``traffic_light`` is ``Traffic Light``) are copied from the
  checkpoint; the other classes keep the rows the model was initialised
  with (the prior-probability bias of a fresh layer);
* a checkpoint without class names (an old file) is mapped by position
  when the class counts are equal; otherwise the classifier starts fresh;
* one log line says what was copied, what was initialised and which of
  the checkpoint's classes did not fit;
* any other tensor whose shape differs from the model's stops the run
  with a ``ConfigError`` naming its key.

Shapes: K classes of the model, K' of the checkpoint.
"""
import re
from typing import Dict, List, Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor

from tood.errors import ConfigError
from tood.registry import HOOKS


def class_key(name: str) -> str:
    """A class name as it is compared: lower case, without spaces,
    underscores, hyphens or dots."""
    return re.sub(r'[\s_\-.]+', '', str(name).lower())


def match_classes(model_classes: Sequence[str],
                  checkpoint_classes: Sequence[str]) -> List[Optional[int]]:
    """For each class of the model, the index of the checkpoint's class of
    the same name, or None."""
    index = {}
    for i, name in enumerate(checkpoint_classes):
        index.setdefault(class_key(name), i)
    return [index.get(class_key(name)) for name in model_classes]


def adapt_classifier(state: Dict[str, Tensor],
                     model_state: Dict[str, Tensor], prefix: str,
                     model_classes: Sequence[str],
                     checkpoint_classes: Optional[Sequence[str]]) -> str:
    """Replace the classifier tensors ``prefix.weight``/``.bias`` of the
    checkpoint's ``state`` by (K, ...) ones: matched rows from the
    checkpoint, the others from ``model_state`` (the model as initialised).

    Returns:
        The log line.
    """
    weight = state.get(f'{prefix}.weight')
    if weight is None or weight.shape[1:] != model_state[
            f'{prefix}.weight'].shape[1:]:
        return ''  # not this classifier: the shape check names it
    num_old, num_new = weight.size(0), len(model_classes)
    if checkpoint_classes is None or len(checkpoint_classes) != num_old:
        if num_old == num_new:
            return (f'load_from: the checkpoint names no classes; its '
                    f'{num_old} classifier rows are kept in their order')
        matches = [None] * num_new
        note = (f'the checkpoint names no classes and has {num_old}, the '
                f'model {num_new}: the classifier starts fresh')
    else:
        matches = match_classes(model_classes, checkpoint_classes)
        if matches == list(range(num_old)) and num_old == num_new:
            return ''  # the same classes in the same order
        note = None
    for name in ('weight', 'bias'):
        key = f'{prefix}.{name}'
        if key not in state:
            continue
        rows = model_state[key].clone()
        for new, old in enumerate(matches):
            if old is not None:
                rows[new] = state[key][old]
        state[key] = rows
    if note is not None:
        return f'load_from: {note}'
    copied = [f'{model_classes[new]}<-{checkpoint_classes[old]}'
              for new, old in enumerate(matches) if old is not None]
    fresh = [model_classes[new] for new, old in enumerate(matches)
             if old is None]
    used = {old for old in matches if old is not None}
    unused = [c for i, c in enumerate(checkpoint_classes) if i not in used]
    return (f'load_from: classifier rows copied for {len(copied)} classes '
            f'({_listed(copied)}); initialised for {len(fresh)} '
            f'({_listed(fresh)}); {len(unused)} classes of the checkpoint '
            f'did not fit ({_listed(unused)})')


def _listed(names: Sequence[str], most: int = 10) -> str:
    return ', '.join(names[:most]) + (', ...' if len(names) > most else '') \
        if names else 'none'


def shape_mismatches(state: Dict[str, Tensor],
                     model_state: Dict[str, Tensor]) -> List[str]:
    """The keys whose tensors exist in both with different shapes."""
    return [
        f'{key}: checkpoint {tuple(value.shape)}, model '
        f'{tuple(model_state[key].shape)}' for key, value in state.items()
        if key in model_state and hasattr(value, 'shape')
        and value.shape != model_state[key].shape
    ]


@HOOKS.register_module()
class LoadFromHook(Hook):
    """Adapts a ``load_from`` checkpoint to the model before mmengine loads
    it (module docstring). ``tood.engine.run_tool`` adds it to a training
    run that has ``load_from`` and does not resume; it runs before the
    other hooks that read the checkpoint (the EMA hook copies its
    ``state_dict``)."""

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if runner.cfg.get('resume'):
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        state = checkpoint.get('state_dict', checkpoint)
        model_state = model.state_dict()
        head = getattr(model, 'bbox_head', None)
        classifier = getattr(head, 'classifier_name', None)
        if classifier is not None:
            meta = checkpoint.get('meta') or {}
            old = (meta.get('dataset_meta') or {}).get('classes')
            new = runner.train_dataloader.dataset.metainfo.get('classes')
            if new is not None:
                line = adapt_classifier(state, model_state,
                                        f'bbox_head.{classifier}', list(new),
                                        list(old) if old else None)
                if line:
                    runner.logger.info(line)
        bad = shape_mismatches(state, model_state)
        if bad:
            raise ConfigError(
                f'load_from {runner.cfg.load_from}: {len(bad)} tensor(s) of '
                'the checkpoint do not fit the model (only the classifier '
                'is adapted to other classes): ' + '; '.join(bad[:5]) +
                ('; ...' if len(bad) > 5 else '') + '. Check that the '
                'config describes the network the checkpoint was trained '
                'with (backbone depth, channels, levels, anchor type).')


def setup_load_from(cfg) -> Optional[str]:
    """Add a :class:`LoadFromHook` to a config that loads a checkpoint to
    fine-tune (``load_from`` without ``resume``). Returns a log line, or
    None when there is nothing to add."""
    if not cfg.get('load_from') or cfg.get('resume'):
        return None
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') in ('LoadFromHook', LoadFromHook)
               for h in hooks):
        hooks.append(dict(type='LoadFromHook'))
    cfg.custom_hooks = hooks
    return (f'load_from {cfg.load_from}: classifier rows mapped by class '
            'name, other tensors must fit')
