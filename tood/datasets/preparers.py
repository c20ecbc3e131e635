"""Data a config makes rather than downloads, and the paths a config reads.

A config's datasets say only where data is and in which format
(``type='CocoDataset'``, ``data_root``, ``ann_file``, ``data_prefix``).
Where that data is drawn by the toolbox itself, such as the procedural
shapes set of the main job, a separate top-level key says how::

    data_preparer = dict(type='ShapesPreparer', data_root='data/shapes/',
                         num_train=2000, num_val=200, img_size=256, seed=0)

The tools (through ``tood.engine.missing_dataset_files``) call
:func:`prepare_data` before they build anything: a preparer runs only
when a dataset or metric of the run reads a path under its ``data_root``
and its files are not there yet. A config derived from the main job that
points its datasets at the user's own data (``data_root``, ``ann_file``,
``data_prefix``, even ``type='VOCDataset'``) therefore never meets the
generator, and needs no ``_delete_=True``: the dataset dicts hold nothing
but dataset arguments.

A config may hold one preparer (a dict) or several (a list of dicts);
new ones are registered in :data:`DATA_PREPARERS` and implement
:class:`BasePreparer`.
"""
import os
import os.path as osp
from typing import Any, Dict, List, Sequence

from mmengine.config import Config
from mmengine.registry import Registry

from tood.datasets.base_det_dataset import paths_by_convention
from tood.registry import DATASETS

# The preparers register themselves when tood.datasets is imported
# (ShapesPreparer: tood/datasets/shapes/preparer.py).
DATA_PREPARERS = Registry(
    'data preparer', scope='tood', locations=['tood.datasets'])


class BasePreparer:
    """Makes the files under ``data_root`` that the config's datasets read.

    Args:
        data_root: the folder it fills; it runs for a run whose datasets or
            metrics read a path under this folder.
    """

    def __init__(self, data_root: str) -> None:
        self.data_root = data_root

    def covers(self, path: str) -> bool:
        """Whether ``path`` lies under ``data_root`` (or is it)."""
        root = osp.abspath(self.data_root)
        path = osp.abspath(path)
        return path == root or path.startswith(root + os.sep)

    def outputs(self) -> List[str]:
        """The files whose presence means the data is complete."""
        raise NotImplementedError

    def make(self) -> None:
        """Write the data; called only when an output is missing. Must be
        safe when several processes (distributed ranks) call it at once."""
        raise NotImplementedError

    def check(self) -> None:
        """Called when the data is already there: warn where it differs
        from what this preparer would make. Nothing by default."""

    def __call__(self) -> bool:
        """Make the data unless it is complete; True if it was made."""
        if all(osp.exists(p) for p in self.outputs()):
            self.check()
            return False
        self.make()
        return True


def dataset_config_paths(dataset_cfg: Dict[str, Any]) -> List[str]:
    """The files and folders a dataset config reads.

    Wrappers are followed (``dataset`` of ``RepeatDataset`` and the like,
    ``datasets`` of ``ConcatDataset``). A dataset class may say what it
    reads with a ``config_paths(cfg)`` class method (``VOCDataset``: its
    split files); others read ``ann_file`` and the ``data_prefix``
    folders.
    """
    if isinstance(dataset_cfg.get('datasets'), (list, tuple)):
        return [
            path for sub in dataset_cfg['datasets']
            for path in dataset_config_paths(sub)
        ]
    if isinstance(dataset_cfg.get('dataset'), dict):
        return dataset_config_paths(dataset_cfg['dataset'])
    dataset_type = dataset_cfg.get('type')
    cls = None
    if isinstance(dataset_type, str):
        import tood.datasets  # noqa: F401  (registers the dataset classes)
        cls = DATASETS.get(dataset_type)
    elif isinstance(dataset_type, type):
        cls = dataset_type
    reader = getattr(cls, 'config_paths', None)
    if reader is not None:
        return list(reader(dataset_cfg))
    return paths_by_convention(dataset_cfg)


def stage_paths(cfg: Config, stages: Sequence[str]) -> List[str]:
    """The paths the given stages read, each once, in config order.

    Args:
        cfg: the full config.
        stages: any of 'train', 'val', 'test': the dataset of
            ``<stage>_dataloader`` and the ``ann_file`` of each
            ``<stage>_evaluator``.
    """
    paths: List[str] = []
    for stage in stages:
        loader_cfg = cfg.get(f'{stage}_dataloader')
        if not loader_cfg or 'dataset' not in loader_cfg:
            continue
        paths += dataset_config_paths(loader_cfg['dataset'])
        evaluators = cfg.get(f'{stage}_evaluator') or []
        if isinstance(evaluators, dict):
            evaluators = [evaluators]
        paths += [e['ann_file'] for e in evaluators if e.get('ann_file')]
    unique: List[str] = []
    for path in paths:
        if path not in unique:
            unique.append(path)
    return unique


def build_preparers(cfg: Config) -> List[BasePreparer]:
    """The preparers of ``cfg.data_preparer`` (a dict, a list or None)."""
    specs = cfg.get('data_preparer') or []
    if isinstance(specs, dict):
        specs = [specs]
    return [DATA_PREPARERS.build(dict(spec)) for spec in specs]


def prepare_data(cfg: Config, stages: Sequence[str]) -> List[str]:
    """Run the config's data preparers that the given stages need.

    A preparer runs when a path that a stage reads (see
    :func:`stage_paths`) lies under its ``data_root``; it makes its data
    if that is incomplete and otherwise only checks it.

    Returns:
        The ``data_root`` of each preparer that made its data now.
    """
    preparers = build_preparers(cfg)
    if not preparers:
        return []
    paths = stage_paths(cfg, stages)
    made = []
    for preparer in preparers:
        if any(preparer.covers(path) for path in paths) and preparer():
            made.append(preparer.data_root)
    return made
