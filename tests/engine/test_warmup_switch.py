"""The ATSS-to-TAL switch through tools/train.py, with no hook listed for
it: a config whose custom_hooks list is replaced, --resume, two processes
and an iteration-based loop.

The tiny config trains 4 iterations per epoch (8 images, batch 2); the
test-only ``PhaseRecorderHook`` writes, per process, which assigner's
``assign`` each iteration ran (ATSS for the warm-up, or TAL).
"""
import json
import os.path as osp
import socket

import pytest
from robust_helpers import CONFIG, finish, make_shapes, start, train_args

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes(str(tmp_path_factory.mktemp('shapes')))


def config(tmp_path, **extra) -> str:
    """The tiny config with custom_hooks replaced by the recorder only."""
    lines = [
        f'_base_ = {CONFIG!r}',
        "custom_imports = dict(imports=['phase_recorder'])",
        "custom_hooks = [dict(type='PhaseRecorderHook')]",
    ] + [f'{key} = {value!r}' for key, value in extra.items()]
    path = tmp_path / 'switch_config.py'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def train(shapes, cfg, work_dir, *options, nproc=1, resume=None):
    args = train_args(work_dir, *options, nproc=nproc, port=free_port())
    args[args.index(CONFIG)] = cfg
    if resume:
        args += ['--resume', resume]
    code, out = finish(start(args, shapes))
    return code, out


def phases(work_dir, rank=0):
    """iteration -> whether the ATSS warm-up assigner ran (True) or the
    TAL one (False); each iteration must have run exactly one."""
    with open(osp.join(work_dir, f'phases_rank{rank}.json')) as f:
        calls = json.load(f)
    iterations = [it for it, _ in calls]
    assert len(iterations) == len(set(iterations)), calls
    return {it: assigner == 'ATSS' for it, assigner in calls}


def test_switches_at_initial_epoch_without_any_hook_listed(shapes, tmp_path):
    work = str(tmp_path / 'work')
    code, out = train(shapes, config(tmp_path), work)
    assert code == 0, out
    # initial_epoch=1: epoch 0 (iterations 0-3) warms up, epoch 1 is TAL.
    assert phases(work) == {i: i < 4 for i in range(8)}
    assert 'Epoch 1, iteration 4: task-aligned assignment (TAL)' in out


def test_switch_after_resume(shapes, tmp_path):
    cfg = config(tmp_path)
    work = str(tmp_path / 'work')
    code, out = train(shapes, cfg, work, 'model.train_cfg.initial_epoch=2')
    assert code == 0, out
    assert phases(work) == {i: True for i in range(8)}
    # From the end of epoch 0, now for 3 epochs: epoch 1 still warms up,
    # TAL from epoch 2 (iteration 8).
    code, out = train(shapes, cfg, work, 'train_cfg.max_epochs=3',
                      'model.train_cfg.initial_epoch=2',
                      resume=osp.join(work, 'epoch_1.pth'))
    assert code == 0, out
    assert phases(work) == {i: i < 8 for i in range(4, 12)}


@pytest.fixture(scope='module')
def ddp_work(shapes, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('ddp')
    work = str(tmp_path / 'work')
    code, out = train(shapes, config(tmp_path), work,
                      'train_dataloader.batch_size=1', nproc=2)
    assert code == 0, out
    return work


@pytest.mark.parametrize('rank', [0, 1])
def test_switch_in_every_process(ddp_work, rank):
    # 8 images over 2 processes x 1 image: 4 iterations per epoch.
    assert phases(ddp_work, rank) == {i: i < 4 for i in range(8)}


ITER_LOOP = dict(
    train_cfg=dict(
        _delete_=True, type='IterBasedTrainLoop', max_iters=6,
        val_interval=100),
    param_scheduler=[
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=3)
    ],
    log_processor=dict(by_epoch=False, window_size=1),
    default_hooks=dict(checkpoint=dict(by_epoch=False, interval=100)))


def test_iteration_based_loop_switches_at_initial_iter(shapes, tmp_path):
    work = str(tmp_path / 'work')
    code, out = train(shapes, config(tmp_path, **ITER_LOOP), work,
                      'model.train_cfg.initial_iter=3')
    assert code == 0, out
    assert phases(work) == {i: i < 3 for i in range(6)}


def test_iteration_based_loop_without_initial_iter_stops(shapes, tmp_path):
    code, out = train(shapes, config(tmp_path, **ITER_LOOP),
                      str(tmp_path / 'work'))
    assert code != 0
    assert 'model.train_cfg.initial_epoch=1' in out
    assert 'set model.train_cfg.initial_iter' in out.replace('Set', 'set')
    assert 'Traceback' not in out
