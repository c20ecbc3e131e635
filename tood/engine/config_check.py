"""Checks of a config before anything is built from it.

``tools/train.py`` and ``tools/test.py`` run them before the runner exists,
so a typo in a type name or a key stops with a message naming the config
path and what is allowed, instead of a traceback from deep inside
mmengine's build. They read the registries (``Registry.get``) and the
signatures of the registered classes; they never parse the text of an
exception.
"""
import difflib
import inspect
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence

import mmengine.registry as mmengine_registry
from mmengine.config import Config
from mmengine.registry import Registry
from mmengine.utils import import_modules_from_strings

import tood.registry as tood_registry
from tood.errors import ConfigError

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


# ---------------------------------------------------------------------- #
# Where each module of a config is built from
# ---------------------------------------------------------------------- #
class Module(NamedTuple):
    """One dict of the config that names a registered ``type``.

    Attributes:
        path: where it is in the config, e.g. ``model.bbox_head``.
        registry: the registry its builder looks the type up in.
        cfg: the dict itself.
        injected: arguments the code that builds it passes itself, so the
            config need not give them; None when they are not known (what
            mmengine's runner passes to the loops, samplers and backends it
            builds, or a parent module to its children), and missing
            required keys are then not reported.
    """
    path: str
    registry: Registry
    cfg: dict
    injected: Optional[Sequence[str]]


# Keys under which modules are built from TASK_UTILS (MMDetection's names).
TASK_UTIL_KEYS = ('assigner', 'initial_assigner', 'sampler', 'bbox_coder',
                  'prior_generator', 'anchor_generator')
# Registries whose classes receive a config's keys as they are; for the
# others (optimizer wrappers and their constructors' paramwise keys, the
# optimizer's params, schedulers' convert_to_iter_based, visualizers,
# log processors, model wrappers) only the type is checked.
_KEYS_CHECKED = ('model', 'task util', 'dataset', 'transform', 'metric',
                 'hook', 'loop', 'data sampler', 'vis_backend')


def _typed(node: Any) -> bool:
    return isinstance(node, dict) and isinstance(node.get('type'), str)


def _one(node: Any, path: str, registry: Registry,
         injected: Optional[Sequence[str]] = ()) -> Iterator[Module]:
    if _typed(node):
        yield Module(path, registry, node, injected)


def _each(node: Any, path: str, registry: Registry,
          injected: Optional[Sequence[str]] = ()) -> Iterator[Module]:
    """A module or a list of modules at ``path``."""
    if isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _one(item, f'{path}.{i}', registry, injected)
    else:
        yield from _one(node, path, registry, injected)


def _model_modules(node: Any, path: str, depth: int) -> Iterator[Module]:
    """The detector and the modules inside it.

    The detector (depth 0) is built by the runner as it stands, its direct
    children by the detector, which passes ``train_cfg`` and ``test_cfg``
    to the head; deeper modules are built by their parents with arguments
    the config does not show, so only their unknown keys are reported.
    Dicts under ``*_cfg`` keys (``norm_cfg``, ``init_cfg``, ``conv_cfg``,
    the head's ``test_cfg.nms``) and ``dcn`` are read by the module itself,
    not looked up in a registry; the assigners and samplers in
    ``train_cfg`` are (from TASK_UTILS).
    """
    if _typed(node):
        injected = ('train_cfg', 'test_cfg') if depth <= 1 else None
        yield Module(path, tood_registry.MODELS, node, injected)
    if isinstance(node, (list, tuple)):
        items = [(str(i), item) for i, item in enumerate(node)]
    elif isinstance(node, dict):
        items = list(node.items())
    else:
        return
    for key, value in items:
        where = f'{path}.{key}'
        if key in TASK_UTIL_KEYS:
            yield from _one(value, where, tood_registry.TASK_UTILS, None)
        elif key.endswith('_cfg') and isinstance(value, dict) and \
                not _typed(value):
            for name in TASK_UTIL_KEYS:
                yield from _one(
                    value.get(name), f'{where}.{name}',
                    tood_registry.TASK_UTILS, None)
        elif key.endswith('_cfg') or key == 'dcn':
            continue
        elif isinstance(value, (dict, list, tuple)):
            yield from _model_modules(value, where,
                                      depth + (not key.isdigit()))


def _transforms(node: Any, path: str) -> Iterator[Module]:
    """A pipeline: transforms, and those inside wrappers such as
    ``RandomChoice(transforms=[[...], [...]])``."""
    if isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _transforms(item, f'{path}.{i}')
    elif _typed(node):
        yield Module(path, tood_registry.TRANSFORMS, node, ())
        if 'transforms' in node:
            yield from _transforms(node['transforms'], f'{path}.transforms')


def _dataset_modules(node: Any, path: str) -> Iterator[Module]:
    """A dataset, its pipeline and the datasets a wrapper
    (``RepeatDataset``, ``ConcatDataset``) holds."""
    if not isinstance(node, dict):
        return
    yield from _one(node, path, tood_registry.DATASETS)
    yield from _transforms(node.get('pipeline'), f'{path}.pipeline')
    yield from _dataset_modules(node.get('dataset'), f'{path}.dataset')
    for i, inner in enumerate(node.get('datasets') or ()):
        yield from _dataset_modules(inner, f'{path}.datasets.{i}')


def config_modules(cfg: dict) -> Iterator[Module]:
    """Every dict of ``cfg`` whose ``type`` a registry resolves, in the
    places where mmengine's runner (or the detector) builds them. Other
    places are left alone: their dicts may not be modules at all."""
    for key, value in cfg.items():
        if key == 'model':
            yield from _model_modules(value, key, 0)
        elif key.endswith('_dataloader') and isinstance(value, dict):
            for sampler in ('sampler', 'batch_sampler'):
                yield from _one(value.get(sampler), f'{key}.{sampler}',
                                tood_registry.DATA_SAMPLERS, None)
            yield from _one(value.get('collate_fn'), f'{key}.collate_fn',
                            mmengine_registry.FUNCTIONS, None)
            yield from _dataset_modules(value.get('dataset'),
                                        f'{key}.dataset')
        elif key.endswith('_pipeline'):
            yield from _transforms(value, key)
        elif key.endswith('_evaluator'):
            metrics = value.get('metrics', value) if isinstance(
                value, dict) and not _typed(value) else value
            yield from _each(metrics, key, tood_registry.METRICS)
        elif key == 'default_hooks' and isinstance(value, dict):
            for name, hook in value.items():
                yield from _one(hook, f'{key}.{name}', tood_registry.HOOKS)
        elif key == 'custom_hooks':
            yield from _each(value, key, tood_registry.HOOKS)
        elif key == 'optim_wrapper' and isinstance(value, dict):
            yield from _one(value, key, tood_registry.OPTIM_WRAPPERS, None)
            yield from _one(value.get('optimizer'), f'{key}.optimizer',
                            tood_registry.OPTIMIZERS, None)
        elif key == 'param_scheduler':
            yield from _each(value, key, tood_registry.PARAM_SCHEDULERS)
        elif key in ('train_cfg', 'val_cfg', 'test_cfg'):
            yield from _one(value, key, tood_registry.LOOPS, None)
        elif key == 'visualizer' and isinstance(value, dict):
            yield from _one(value, key, tood_registry.VISUALIZERS, None)
            yield from _each(value.get('vis_backends'),
                             f'{key}.vis_backends', tood_registry.VISBACKENDS,
                             None)
        elif key == 'vis_backends':
            yield from _each(value, key, tood_registry.VISBACKENDS, None)
        elif key == 'log_processor':
            yield from _one(value, key, tood_registry.LOG_PROCESSORS, None)
        elif key == 'model_wrapper_cfg':
            yield from _one(value, key, tood_registry.MODEL_WRAPPERS, None)


# ---------------------------------------------------------------------- #
# Checking them
# ---------------------------------------------------------------------- #
def registered_names(registry: Registry) -> List[str]:
    """Every type ``registry`` can build without a scope prefix: its own
    and its ancestors'."""
    registry.import_from_location()
    names = set()
    while registry is not None:
        names.update(registry.module_dict)
        registry = registry.parent
    return sorted(names)


def closest_names(name: str, candidates: Sequence[str],
                  count: int = 5) -> List[str]:
    """The ``count`` candidates most like ``name``, ignoring case."""
    by_lower: Dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    matches = difflib.get_close_matches(
        name.lower(), list(by_lower), n=count, cutoff=0.0)
    return [by_lower[m] for m in matches]


def _lookup(registry: Registry, type_name: str) -> Any:
    try:
        return registry.get(type_name)
    except Exception:  # noqa: BLE001 - e.g. a scope prefix of no package
        return None


def _unknown_type(module: Module) -> str:
    type_name = module.cfg['type']
    registry = module.registry
    close = closest_names(type_name, registered_names(registry))
    return (f"Unknown type '{type_name}' (at {module.path}): it is not "
            f'registered as a {registry.name} in the {registry.scope} '
            f'scope. Closest registered names: {", ".join(close)}. A '
            'module of your own must be imported first, e.g. '
            "custom_imports=dict(imports=['my_package.my_module']).")


def _key_problems(module: Module, built: Any) -> List[str]:
    """Keys of ``module.cfg`` that ``built``'s ``__init__`` does not take,
    and required arguments it lacks (where the injected ones are known)."""
    if not inspect.isclass(built) or \
            module.registry.name not in _KEYS_CHECKED:
        return []
    try:
        parameters = inspect.signature(built).parameters.values()
    except (TypeError, ValueError):  # no inspectable signature
        return []
    name = built.__name__
    named = {
        p.name: p
        for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    given = [key for key in module.cfg if key not in ('type', '_scope_')]
    problems = []
    if module.injected is not None:
        missing = [
            key for key, p in named.items() if p.default is p.empty
            and key not in module.cfg and key not in module.injected
        ]
        if missing:
            problems.append(
                f'The config of {name} (at {module.path}) lacks the '
                f'required key(s) {", ".join(map(repr, missing))}.')
    if not any(p.kind == p.VAR_KEYWORD for p in parameters):
        unknown = [key for key in given if key not in named]
        for key in unknown:
            close = closest_names(key, list(named), count=3)
            hint = f' (it takes {", ".join(close)}, ...)' if close else ''
            problems.append(
                f"The config of {name} (at {module.path}) has the key "
                f"'{key}', which {name} does not take{hint}: check its "
                'spelling.')
    return problems


def check_config(cfg: Config) -> None:
    """Raise :class:`ConfigError` listing every module type of ``cfg``
    that no registry knows (with the closest registered names) and every
    key a module's class does not take or lacks.

    Types are looked up in the tood scope, whose registries fall back to
    mmengine's; ``custom_imports`` are imported first, as the runner does.
    """
    custom_imports = cfg.get('custom_imports')
    if custom_imports:
        import_modules_from_strings(**custom_imports)
    problems = []
    for module in config_modules(cfg.to_dict()):
        built = _lookup(module.registry, module.cfg['type'])
        if built is None:
            problems.append(_unknown_type(module))
        else:
            problems += _key_problems(module, built)
    if problems:
        raise ConfigError('\n'.join(problems))
