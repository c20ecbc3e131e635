"""Errors a user can fix, and the one-paragraph messages the tools print for
them instead of a traceback.

``tools/train.py`` and ``tools/test.py`` run the runner inside
:func:`explain_error`'s net: an error it recognises (a config key that is
missing or unknown, a module type that is not registered, a bad annotation
file or image, an unsafe checkpoint, a loss that is no longer finite)
becomes a message naming the key, file or iteration; anything else keeps
its traceback, as a bug should.
"""
import difflib
import re
import sys
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import mmengine.registry as mmengine_registry
from mmengine.config import Config
from mmengine.registry import Registry

from tood.errors import USER_ERRORS, ConfigError


# What each tool cannot run without; the val loop needs all of its three
# keys or none.
REQUIRED_KEYS = {
    'train': ('model', 'train_dataloader', 'train_cfg', 'optim_wrapper'),
    'test': ('model', 'test_dataloader', 'test_cfg', 'test_evaluator'),
}
VAL_KEYS = ('val_dataloader', 'val_cfg', 'val_evaluator')


def check_required_keys(cfg: Config, stage: str) -> None:
    """Raise :class:`ConfigError` naming every key ``stage`` ('train' or
    'test') needs that ``cfg`` lacks."""
    missing = [key for key in REQUIRED_KEYS[stage] if not cfg.get(key)]
    if stage == 'train':
        val_set = [key for key in VAL_KEYS if cfg.get(key)]
        if val_set:
            missing += [key for key in VAL_KEYS if key not in val_set]
    model = cfg.get('model')
    if isinstance(model, dict) and 'type' not in model:
        missing.append('model.type')
    for key in REQUIRED_KEYS[stage] + VAL_KEYS:
        loader = cfg.get(key)
        if not key.endswith('_dataloader') or not isinstance(loader, dict):
            continue
        dataset = loader.get('dataset')
        if not isinstance(dataset, dict):
            missing.append(f'{key}.dataset')
        elif 'type' not in dataset:
            missing.append(f'{key}.dataset.type')
    if missing:
        raise ConfigError(
            f'The config {cfg.filename} lacks required key(s) for '
            f'{stage}ing: {", ".join(missing)}. Start from a config in '
            'configs/ (or inherit from one with _base_) and override what '
            'differs.')


def type_paths(node: Any, type_name: str, prefix: str = '') -> List[str]:
    """Config paths ('model.backbone') of the dicts whose type is
    ``type_name``."""
    found = []
    if isinstance(node, dict):
        if node.get('type') == type_name:
            found.append(prefix or '<top level>')
        items: Iterator[Tuple[Any, Any]] = iter(node.items())
    elif isinstance(node, (list, tuple)):
        items = iter(enumerate(node))
    else:
        return found
    for key, value in items:
        found += type_paths(value, type_name,
                            f'{prefix}.{key}' if prefix else str(key))
    return found


def _registries() -> Iterator[Registry]:
    import tood.registry as tood_registry
    for module in (tood_registry, mmengine_registry):
        for value in vars(module).values():
            if isinstance(value, Registry):
                yield value


def registered_names(scope: str, name: str) -> List[str]:
    """Every type the registry ``scope::name`` can build without a scope
    prefix: its own and its ancestors'."""
    names = set()
    for registry in _registries():
        if registry.scope == scope and registry.name == name:
            while registry is not None:
                names.update(registry.module_dict)
                registry = registry.parent
    return sorted(names)


def closest_names(name: str, candidates: Sequence[str],
                  count: int = 5) -> List[str]:
    """The ``count`` candidates most like ``name``, ignoring case."""
    by_lower = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    matches = difflib.get_close_matches(
        name.lower(), list(by_lower), n=count, cutoff=0.0)
    return [by_lower[m] for m in matches]


def _where(cfg: Optional[Config], type_name: str) -> str:
    paths = type_paths(cfg._cfg_dict.to_dict(), type_name) if cfg else []
    return f' (at {", ".join(paths)})' if paths else ''


_UNKNOWN_TYPE = re.compile(r"(\S+) is not in the (\S+?)::(\S+) registry")
_MISSING_ARGS = re.compile(
    r'(\w+)\.__init__\(\) missing \d+ required (?:positional|keyword-only) '
    r'arguments?: (.+)')
_UNEXPECTED_ARG = re.compile(
    r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'")


def _own_message(error: BaseException) -> str:
    """The error's message without the traceback that a DataLoader worker
    puts in front of it."""
    message = str(error)
    if 'Original Traceback' in message:
        marker = f'{type(error).__name__}: '
        message = message.rpartition(marker)[2].strip() or message
    return message


def explain_error(error: BaseException,
                  cfg: Optional[Config] = None) -> Optional[str]:
    """A message for an error the user can fix, or None for others.

    Args:
        error: what the runner raised.
        cfg: the config, to name where a module type is used.
    """
    if isinstance(error, USER_ERRORS):
        return _own_message(error)
    message = error.args[0] if error.args else ''
    if not isinstance(message, str):
        return None
    if isinstance(error, KeyError):
        match = _UNKNOWN_TYPE.search(message)
        if match is None:
            return None
        type_name, scope, registry = match.groups()
        close = closest_names(type_name, registered_names(scope, registry))
        return (f"Unknown type '{type_name}'{_where(cfg, type_name)}: it "
                f"is not registered as a {registry} in the {scope} scope. "
                f'Closest registered names: {", ".join(close)}. A module of '
                'your own must be imported first, e.g. '
                "custom_imports=dict(imports=['my_package.my_module']).")
    if isinstance(error, TypeError):
        match = _MISSING_ARGS.search(message)
        if match is not None:
            type_name, args = match.groups()
            return (f'The config of {type_name}{_where(cfg, type_name)} '
                    f'lacks the required key(s) {args}.')
        match = _UNEXPECTED_ARG.search(message)
        if match is not None:
            type_name, arg = match.groups()
            return (f"The config of {type_name}{_where(cfg, type_name)} has "
                    f"the key '{arg}', which {type_name} does not take: "
                    'check its spelling.')
    return None


def exit_if_user_error(error: BaseException,
                       cfg: Optional[Config] = None,
                       runner: Any = None) -> None:
    """Exit the tool with the message of :func:`explain_error` when there
    is one (also written to the runner's log file when there is a runner);
    return otherwise, so that the caller re-raises.

    Usage: ``except Exception as e: exit_if_user_error(e, cfg, runner);
    raise``.
    """
    message = explain_error(error, cfg)
    if message is None:
        return
    if runner is not None:
        runner.logger.error(message)
        sys.exit(1)
    sys.exit(message)
