"""Config helpers shared by ``tools/train.py`` and ``tools/test.py``."""
import os.path as osp
import warnings
from typing import Any, Dict, List, Optional

from mmengine.config import Config


def _has_key(cfg: Any, dotted_key: str) -> bool:
    """Whether ``dotted_key`` ('a.b.0.c') names an existing config entry."""
    node = cfg
    for part in dotted_key.split('.'):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif (isinstance(node, (list, tuple)) and part.isdigit()
              and int(part) < len(node)):
            node = node[int(part)]
        else:
            return False
    return True


def _new_default_hook(key: str, options: Dict[str, Any]) -> bool:
    """Whether ``key`` sets an entry of a hook that ``options`` adds to
    ``default_hooks`` whole, type included (``default_hooks.early_stopping
    .type=EarlyStoppingHook`` and its arguments): a new entry on purpose,
    not a typo."""
    parts = key.split('.')
    return (len(parts) > 2 and parts[0] == 'default_hooks'
            and f'default_hooks.{parts[1]}.type' in options)


def unknown_cfg_keys(cfg: Config, options: Dict[str, Any]) -> List[str]:
    """The keys of ``options`` that do not exist in ``cfg`` (a hook added
    to ``default_hooks`` with its type counts as known)."""
    return [
        key for key in options if not _has_key(cfg._cfg_dict, key)
        and not _new_default_hook(key, options)
    ]


def merge_cfg_options(cfg: Config, options: Optional[Dict[str, Any]]) -> None:
    """Apply ``--cfg-options`` to ``cfg``, warning about keys it lacks.

    A key that is not in the config is still added (that is how new
    entries are set), but it is more often a typo that would otherwise be
    ignored silently, so it is named in a warning.
    """
    if not options:
        return
    unknown = unknown_cfg_keys(cfg, options)
    if unknown:
        warnings.warn(
            '--cfg-options sets keys that are not in the config '
            f'{cfg.filename}: {", ".join(unknown)}. Check their spelling; '
            'they are added as new entries.')
    cfg.merge_from_dict(options)


def load_config(path: str,
                options: Optional[Dict[str, Any]] = None,
                launcher: str = 'none',
                work_dir: Optional[str] = None) -> Config:
    """The config the tools run: ``path`` with ``--cfg-options`` merged,
    the launcher set and ``work_dir`` defaulting to
    ``work_dirs/<config name>`` as in MMDetection."""
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    merge_cfg_options(cfg, options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    return cfg


# The default hooks mmengine's runner registers itself
# (Runner.register_default_hooks): None there removes one of them.
MMENGINE_DEFAULT_HOOKS = ('runtime_info', 'timer', 'sampler_seed', 'logger',
                          'param_scheduler', 'checkpoint')


def drop_disabled_hooks(cfg: Config) -> List[str]:
    """Remove the ``default_hooks`` entries set to None that are not
    mmengine's own; returns their names.

    mmengine reads None as "remove this default hook" only for the hooks it
    registers itself, and asserts on any other None, so
    ``--cfg-options default_hooks.ema=None`` (or ``visualization=None``)
    would stop the run. Dropped here, such an entry means "off" as it does
    for mmengine's hooks.
    """
    hooks = cfg.get('default_hooks') or {}
    dropped = [
        name for name, hook in hooks.items()
        if hook is None and name not in MMENGINE_DEFAULT_HOOKS
    ]
    for name in dropped:
        hooks.pop(name)
    return dropped


def missing_dataset_files(cfg: Config, stages: List[str]) -> List[str]:
    """Paths that the given stages need but that do not exist, after the
    config's ``data_preparer`` (if any) has made the data it makes.

    Args:
        cfg: The full config.
        stages: Any of 'train', 'val', 'test': what the dataset of
            ``<stage>_dataloader`` reads (``ann_file`` and ``data_prefix``
            folders, or what its class says, see
            ``tood.datasets.preparers.stage_paths``) and the ``ann_file``
            of ``<stage>_evaluator``.
    """
    # Imported here: the datasets pull in pycocotools and OpenCV.
    from tood.datasets.preparers import prepare_data, stage_paths
    prepare_data(cfg, stages)
    return [path for path in stage_paths(cfg, stages) if not osp.exists(path)]


def dataset_missing_message(cfg: Config, missing: List[str]) -> str:
    """What to tell a user whose dataset files are not where the config
    says."""
    lines = '\n'.join(f'  {osp.abspath(p)}' for p in missing)
    return (
        f'The dataset for {cfg.filename} was not found. Looked for:\n{lines}\n'
        'For COCO 2017, download train2017.zip, val2017.zip and '
        'annotations_trainval2017.zip from https://cocodataset.org/#download '
        'and unpack them as\n'
        '  data/coco/annotations/instances_{train,val}2017.json\n'
        '  data/coco/train2017/  data/coco/val2017/\n'
        'under the directory you run from (or a symlink data/coco -> your '
        'copy), or point the config elsewhere, e.g. --cfg-options '
        'train_dataloader.dataset.data_root=/path/to/coco/ '
        'val_dataloader.dataset.data_root=/path/to/coco/ '
        'val_evaluator.ann_file=/path/to/coco/annotations/'
        'instances_val2017.json\n'
        'With internet access, python tools/misc/download_dataset.py '
        '{coco2017,voc2007,voc2012,bccd} fetches a public dataset into data/ '
        '(docs/data.md).')
