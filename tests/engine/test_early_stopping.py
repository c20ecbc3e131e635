"""The documented switches for keeping the best checkpoint
(``default_hooks.checkpoint.save_best``) and stopping early
(``default_hooks.early_stopping``), each from the command line on a tiny
training of 4 epochs validated after each."""
import os
import os.path as osp

import pytest

from tood.engine import load_from_local

from robust_helpers import (finish, make_shapes, start, train_args,
                            val_metrics)

pytestmark = pytest.mark.e2e


def train(tmp_path, *options):
    root = make_shapes(str(tmp_path))
    work_dir = str(tmp_path / 'work')
    code, log = finish(
        start(train_args(work_dir, 'train_cfg.max_epochs=4',
                         'param_scheduler.1.end=4', *options), cwd=root))
    assert code == 0, log[-5000:]
    return work_dir, log


def test_save_best_keeps_the_checkpoint_of_the_best_validation(tmp_path):
    work_dir, log = train(tmp_path,
                          'default_hooks.checkpoint.save_best=coco/bbox_mAP',
                          'default_hooks.checkpoint.max_keep_ckpts=1')
    # A documented switch: no warning about an unknown key.
    assert 'keys that are not in the config' not in log
    maps = [m['coco/bbox_mAP'] for m in val_metrics(work_dir)]
    assert len(maps) == 4
    best_epoch = maps.index(max(maps)) + 1
    best = [f for f in os.listdir(work_dir) if f.startswith('best_')]
    assert best == [f'best_coco_bbox_mAP_epoch_{best_epoch}.pth']
    checkpoint = load_from_local(osp.join(work_dir, best[0]))
    assert checkpoint['meta']['epoch'] == best_epoch
    # The regular checkpoints go on as before: the last one is kept and
    # resumed from.
    assert osp.isfile(osp.join(work_dir, 'epoch_4.pth'))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().endswith('epoch_4.pth')


def test_early_stopping_ends_training_when_the_metric_stalls(tmp_path):
    # No improvement can reach min_delta=1: the first validation sets the
    # best score, the second does not beat it and, with patience 1, stops.
    work_dir, log = train(
        tmp_path, 'default_hooks.early_stopping.type=EarlyStoppingHook',
        'default_hooks.early_stopping.monitor=coco/bbox_mAP',
        'default_hooks.early_stopping.patience=1',
        'default_hooks.early_stopping.min_delta=1.0')
    assert 'keys that are not in the config' not in log
    assert len(val_metrics(work_dir)) == 2
    assert 'Epoch(train) [3]' not in log
    assert sorted(f for f in os.listdir(work_dir)
                  if f.endswith('.pth')) == ['epoch_1.pth', 'epoch_2.pth']
