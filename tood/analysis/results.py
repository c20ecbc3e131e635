"""Finished training runs (work dirs of tools/train.py) as one Markdown
table: accuracy, size, cost and training time side by side.

From each work dir:

* the config: the ``*.py`` that the runner dumps into the work dir (the
  newest, if there are several), with any ``--cfg-options`` applied, read
  without running it (``tood.analysis.dumped_config``: a ``.py`` in a
  shared work dir that holds anything but plain values is refused);
* accuracy: the last validation record of ``vis_data/scalars.json``
  (``*/bbox_mAP``, ``_50``, ``_75``, ``_s``, ``_m``, ``_l``; shown ×100), and
  the best mAP with its epoch; a resumed run is joined to the runs it
  continued (``load_work_dir``);
* training time: the sum of the logged iteration times (each training
  record's window-averaged ``time`` times the iterations since the previous
  record), so validation and start-up are left out (and so are the last
  iterations of an epoch that the logger skips, fewer than its interval);
* parameters and FLOPs: the model built from the config and counted at the
  test pipeline's image size (``tood.analysis.complexity``); runs with the
  same model and size are counted once.
"""
import glob
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

from tood.visualization import ScalarLog, load_work_dir

from .dumped_config import read_dumped_config

METRICS = (('AP', 'bbox_mAP'), ('AP50', 'bbox_mAP_50'),
           ('AP75', 'bbox_mAP_75'), ('APs', 'bbox_mAP_s'),
           ('APm', 'bbox_mAP_m'), ('APl', 'bbox_mAP_l'))


@dataclass
class RunResult:
    """One work dir's row.

    Attributes:
        name: the work dir's folder name.
        config: the dumped config's file name, without ``.py``.
        metrics: column name (``AP``, ``AP50``, ...) -> last value, in
            [0, 1]; missing metrics, and COCO's -1 (no object of that
            size), are left out.
        epoch: the step (epoch) of the last validation, if any.
        best: (best mAP, its step), if any validation.
        train_seconds: summed iteration times, if any training record.
        params, flops: from ``tood.analysis.complexity``, if counted.
        input_shape: (H, W) the FLOPs were counted at.
    """
    name: str
    config: str
    metrics: Dict[str, float] = field(default_factory=dict)
    epoch: Optional[int] = None
    best: Optional[Tuple[float, int]] = None
    train_seconds: Optional[float] = None
    params: Optional[int] = None
    flops: Optional[int] = None
    input_shape: Optional[Tuple[int, int]] = None


def find_config(work_dir: str) -> str:
    """The config the runner dumped into ``work_dir``.

    Raises:
        FileNotFoundError: there is none.
    """
    configs = glob.glob(osp.join(work_dir, '*.py'))
    if not configs:
        raise FileNotFoundError(
            f'no dumped config (*.py) in {work_dir}: is it a work dir of '
            'tools/train.py?')
    return max(configs, key=osp.getmtime)


def _metric(record: dict, suffix: str) -> Optional[float]:
    """The value of ``<prefix>/<suffix>`` (``coco/bbox_mAP``, ...)."""
    for key, value in record.items():
        if key.split('/')[-1] == suffix:
            return float(value)
    return None


def training_seconds(log: ScalarLog) -> Optional[float]:
    """Summed iteration times of the training records."""
    records = [r for r in log.train if 'time' in r]
    if not records:
        return None
    total, last_iter = 0.0, 0
    for record in records:
        total += float(record['time']) * (record['iter'] - last_iter)
        last_iter = record['iter']
    return total


def collect_run(work_dir: str,
                count_flops: bool = True,
                cache: Optional[dict] = None) -> RunResult:
    """The row of one work dir.

    Args:
        work_dir: a work dir of tools/train.py.
        count_flops: build the model and count parameters and FLOPs.
        cache: shared between calls, so that runs with the same model and
            image size are counted once.
    Raises:
        FileNotFoundError: no dumped config or no scalar log.
        ConfigError: with ``count_flops``, the dumped config holds more
            than plain values (nothing in it is run).
    """
    config_file = find_config(work_dir)
    log = load_work_dir(work_dir)
    result = RunResult(
        name=osp.basename(osp.normpath(work_dir)),
        config=osp.splitext(osp.basename(config_file))[0],
        train_seconds=training_seconds(log))
    val = [r for r in log.val if _metric(r, 'bbox_mAP') is not None]
    if val:
        last = val[-1]
        result.epoch = int(last['step'])
        for column, suffix in METRICS:
            value = _metric(last, suffix)
            if value is not None and value >= 0:
                result.metrics[column] = value
        best = max(val, key=lambda r: _metric(r, 'bbox_mAP'))
        result.best = (_metric(best, 'bbox_mAP'), int(best['step']))
    if count_flops:
        from .complexity import (config_complexity, eval_image_shape,
                                 pad_divisor, padded)
        cfg = read_dumped_config(config_file)
        shape = padded(eval_image_shape(cfg), pad_divisor(cfg))
        key = (repr(cfg.model.to_dict()), shape)
        cache = {} if cache is None else cache
        if key not in cache:
            cache[key] = config_complexity(cfg, shape)
        result.params = cache[key].params
        result.flops = cache[key].flops
        result.input_shape = cache[key].input_shape
    return result


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return '-'
    seconds = round(seconds)
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def format_giga(value: float) -> str:
    """One decimal from 1 G on, three significant digits below."""
    value /= 1e9
    return f'{value:.1f}' if value >= 1 else f'{value:.3g}'


def markdown_table(results: Sequence[RunResult]) -> str:
    """One row per run; AP columns ×100 with one decimal."""
    header = (['run', 'config', 'epoch'] + [c for c, _ in METRICS] +
              ['best AP (epoch)', 'params (M)', 'GFLOPs (input WxH)',
               'train time (h:mm:ss)'])
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '---|' * len(header)]
    for r in results:
        metrics = [
            f'{100 * r.metrics[c]:.1f}' if c in r.metrics else '-'
            for c, _ in METRICS
        ]
        best = (f'{100 * r.best[0]:.1f} ({r.best[1]})'
                if r.best is not None else '-')
        params = f'{r.params / 1e6:.2f}' if r.params is not None else '-'
        flops = (f'{format_giga(r.flops)} ({r.input_shape[1]}x'
                 f'{r.input_shape[0]})' if r.flops is not None else '-')
        epoch = str(r.epoch) if r.epoch is not None else '-'
        row = [r.name, r.config, epoch] + metrics + [
            best, params, flops, _duration(r.train_seconds)
        ]
        lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines) + '\n'
