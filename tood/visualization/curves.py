"""Reading mmengine's scalar logs and plotting training curves.

mmengine's ``LocalVisBackend`` appends one json object per line to
``{work_dir}/{timestamp}/vis_data/scalars.json``:

* training lines (every ``LoggerHook`` interval) carry ``iter``, ``epoch``
  (epoch-based loops), ``lr`` and the window-averaged ``loss``,
  ``loss_cls``, ``loss_bbox``, ...;
* validation lines carry the metrics (``coco/bbox_mAP``, ...) and
  ``step``: the epoch (or iteration, for iteration-based logging) they
  were measured after.

Every run of ``tools/train.py`` in a work dir adds a timestamped folder;
``load_work_dir`` joins a resumed run to the runs it continued.
"""
import glob
import json
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

SCALARS_FILE = osp.join('vis_data', 'scalars.json')
DEFAULT_KEYS = ('loss', 'loss_cls', 'loss_bbox', 'coco/bbox_mAP',
                'align/aligned', 'align/distance', 'align/spearman',
                'align/tal_positives_per_gt', 'align/tal_gts_without_positive')


@dataclass
class ScalarLog:
    """The scalars of one training run.

    Attributes:
        name: shown in legends.
        train: training records sorted by ``iter``.
        val: validation records sorted by ``step``.
    """
    name: str
    train: List[dict] = field(default_factory=list)
    val: List[dict] = field(default_factory=list)

    @property
    def by_epoch(self) -> bool:
        """Whether validation steps count epochs (epoch-based training)."""
        return any('epoch' in r for r in self.train) or not self.train

    def keys(self) -> List[str]:
        """Every scalar name present, training ones first."""
        names: Dict[str, None] = {}
        for record in self.train + self.val:
            names.update(dict.fromkeys(record))
        for bookkeeping in ('iter', 'epoch', 'step'):
            names.pop(bookkeeping, None)
        return list(names)

    def series(self, key: str) -> Tuple[np.ndarray, np.ndarray, str]:
        """``(x, y, x_label)`` of one scalar.

        Training scalars are plotted against the iteration; validation ones
        (keys found in no training record, e.g. metrics) against their
        step. Keys such as ``time`` that both have come from training.
        """
        train = [r for r in self.train if key in r]
        if train:
            return (np.array([r['iter'] for r in train]),
                    np.array([r[key] for r in train], dtype=float), 'iter')
        val = [r for r in self.val if key in r]
        return (np.array([r['step'] for r in val]),
                np.array([r[key] for r in val], dtype=float),
                'epoch' if self.by_epoch else 'iter')


def read_scalars(path: str, name: Optional[str] = None) -> ScalarLog:
    """One ``scalars.json`` file. Lines that do not parse (a run killed
    while writing) are skipped; a later record of the same iteration or
    step replaces an earlier one."""
    train: Dict[int, dict] = {}
    val: Dict[int, dict] = {}
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict):
                continue
            if 'iter' in record:
                train[int(record['iter'])] = record
            elif 'step' in record:
                val[int(record['step'])] = record
    return ScalarLog(
        name=name or path,
        train=[train[k] for k in sorted(train)],
        val=[val[k] for k in sorted(val)])


def find_scalar_files(work_dir: str) -> List[str]:
    """The ``scalars.json`` of every run in ``work_dir``, oldest first
    (run folders are named by their start time)."""
    return sorted(glob.glob(osp.join(work_dir, '*', SCALARS_FILE)))


def load_work_dir(path: str,
                  name: Optional[str] = None,
                  last_run: Optional[str] = None) -> ScalarLog:
    """The training curves of a work dir (or of one ``scalars.json``).

    A run resumed from a checkpoint logs only what came after it, in its
    own folder; so, starting from the newest run, each older run supplies
    the iterations (and validation steps) before those already collected.
    Runs without training records (``runner.val()``) are skipped.

    Args:
        path: a work dir, or a ``scalars.json`` file read as it is.
        name: the legend name; default: the work dir's name.
        last_run: ignore runs newer than this run folder (the hook passes
            its own ``log_dir``).
    Raises:
        FileNotFoundError: no scalar log was found.
    """
    if osp.isfile(path):
        return read_scalars(path, name or osp.basename(path))
    files = find_scalar_files(path)
    if last_run is not None:
        limit = osp.basename(osp.normpath(last_run))
        files = [
            f for f in files
            if osp.basename(osp.dirname(osp.dirname(f))) <= limit
        ]
    if not files:
        raise FileNotFoundError(
            f'no {SCALARS_FILE} under {path}/<timestamp>/: is it a work dir '
            'of tools/train.py with a LocalVisBackend?')
    runs = [read_scalars(f) for f in files]
    with_train = [r for r in runs if r.train] or runs[-1:]
    log = ScalarLog(name=name or osp.basename(osp.normpath(path)))
    for run in reversed(with_train):
        if not log.train:
            log.train, log.val = list(run.train), list(run.val)
            continue
        first_iter = log.train[0]['iter']
        # Validation after epoch e precedes training epoch e + 1.
        if log.by_epoch and 'epoch' in log.train[0]:
            val_limit = log.train[0]['epoch']
        else:
            val_limit = first_iter
        if log.val:
            val_limit = min(val_limit, log.val[0]['step'])
        log.train = [r for r in run.train if r['iter'] < first_iter
                     ] + log.train
        log.val = [r for r in run.val if r['step'] < val_limit] + log.val
    return log


def plot_curves(logs: Sequence[ScalarLog],
                out_file: str,
                keys: Sequence[str] = DEFAULT_KEYS,
                title: Optional[str] = None) -> List[str]:
    """One panel per scalar, every log overlaid, saved as a PNG.

    Args:
        logs: runs to compare; each gets its own colour.
        out_file: the image to write (its folder is created).
        keys: scalars to plot; those that no log has are left out.
        title: above the panels.
    Returns:
        The keys plotted.
    Raises:
        ValueError: none of ``keys`` is in any log.
    """
    # The object-oriented API leaves pyplot's global state (and backend)
    # alone, so this works headless and inside a training process.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    present = [k for k in keys if any(k in log.keys() for log in logs)]
    if not present:
        available = sorted({k for log in logs for k in log.keys()})
        raise ValueError(f'none of {list(keys)} is in the logs; they hold '
                         f'{available}')
    ncols = min(len(present), 2 if len(present) == 4 else 3)
    nrows = -(-len(present) // ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.6 * nrows), layout='constrained')
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, key in zip(axes, present):
        xs = []
        for i, log in enumerate(logs):
            if key not in log.keys():
                continue
            x, y, x_label = log.series(key)
            xs.extend(x.tolist())
            ax.plot(
                x,
                y,
                color=f'C{i % 10}',
                marker='o' if len(x) <= 30 else None,
                markersize=3,
                linewidth=1.2,
                label=log.name)
            ax.set_xlabel(x_label)
        ax.set_title(key)
        if xs and min(xs) == max(xs):
            # One epoch or step: integer ticks need a range around it.
            ax.set_xlim(xs[0] - 1, xs[0] + 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(logs) > 1:
            ax.legend(fontsize='small')
    for ax in axes[len(present):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    folder = osp.dirname(out_file)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(out_file, dpi=100)
    return present
