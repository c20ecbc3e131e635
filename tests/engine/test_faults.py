"""Faults during training: NaN losses and weights, kills while saving,
checkpoints that would run code, and reseeding for exact resumption."""
import functools
import http.server
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import textwrap
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import CheckpointLoader, Runner
from robust_helpers import REPO, tool_env
from torch.utils.data import Dataset

from tood.engine import setup_checkpoint_io
from tood.engine.checkpoint import atomic_write
from tood.engine.errors import explain_error
from tood.engine.hooks import CheckpointHook, EpochSeedHook, LossCheckHook
from tood.errors import NonFiniteLossError, UnsafeCheckpointError

# Trainings, exports or tools in their own processes: seconds to
# minutes each (pytest -m "not e2e" leaves them out).
pytestmark = pytest.mark.e2e


class ToyModel(BaseModel):
    """A linear model whose ``fault``-th training step goes wrong.

    fault='loss': the loss is NaN. fault='grad': the loss is finite but its
    gradient is not (sqrt at 0), so the step leaves NaN weights.
    """

    def __init__(self, fault: str = 'loss', at: int = 3):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.fault, self.at, self.calls = fault, at, 0

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(inputs)
        if mode != 'loss':
            return out
        self.calls += 1
        losses = dict(loss_main=out.pow(2).mean(), loss_aux=out.abs().mean())
        if self.calls == self.at and self.fault == 'loss':
            losses['loss_main'] = losses['loss_main'] * float('nan')
        if self.calls == self.at and self.fault == 'grad':
            losses['loss_aux'] = losses['loss_aux'] + torch.sqrt(
                self.linear.weight.sum() * 0)
        return losses


class ToyDataset(Dataset):

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return dict(inputs=torch.tensor([float(index), 1.0]))


def make_runner(work_dir, model, max_keep_ckpts=-1):
    return Runner(
        model=model,
        work_dir=str(work_dir),
        # Unique: runners made in the same second would share a logger.
        experiment_name=f'faults-{osp.basename(work_dir)}',
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=3),
        default_hooks=dict(
            checkpoint=CheckpointHook(
                interval=1, by_epoch=False, max_keep_ckpts=max_keep_ckpts),
            loss_check=LossCheckHook()),
        randomness=dict(seed=0),
        # Leaves 'tood' the current scope for the tests that follow.
        default_scope='tood')


def read_last_checkpoint(work_dir) -> str:
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def test_nan_loss_stops_before_anything_saves_it(tmp_path):
    setup_checkpoint_io()
    runner = make_runner(tmp_path, ToyModel('loss', at=3))
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    message = str(info.value)
    # Iteration 3 is epoch 2's first batch (2 batches per epoch).
    assert 'iteration 3 (epoch 2, batch 1)' in message
    assert 'loss_main=nan' in message and 'loss_aux=' in message
    assert str(tmp_path / 'iter_2.pth') in message
    # The checkpoint hook (after every iteration) never saw iteration 3.
    assert sorted(os.listdir(tmp_path)).count('iter_3.pth') == 0
    assert read_last_checkpoint(tmp_path) == str(tmp_path / 'iter_2.pth')
    ckpt = CheckpointLoader.load_checkpoint(str(tmp_path / 'iter_2.pth'))
    assert ckpt['meta']['iter'] == 2
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values())
    # tools/train.py prints it without a traceback.
    assert explain_error(info.value) == message


def test_nan_weights_are_never_saved(tmp_path):
    runner = make_runner(tmp_path, ToyModel('grad', at=2))
    with pytest.raises(NonFiniteLossError, match='weights hold NaN') as info:
        runner.train()
    assert 'linear.weight' in str(info.value)
    assert (tmp_path / 'iter_1.pth').exists()
    assert not (tmp_path / 'iter_2.pth').exists()
    assert read_last_checkpoint(tmp_path) == str(tmp_path / 'iter_1.pth')


def test_interrupted_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / 'epoch_1.pth'
    atomic_write(target, b'old checkpoint')

    def dies(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, 'replace', dies)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b'new checkpoint, never completed')
    monkeypatch.undo()
    assert target.read_bytes() == b'old checkpoint'
    assert os.listdir(tmp_path) == ['epoch_1.pth']  # no temporary left
    atomic_write(target, 'new')
    assert target.read_bytes() == b'new'
    # Files get the permissions a plain write gives them.
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~umask)


KILL_WHILE_SAVING = textwrap.dedent('''
    import os, signal, sys
    sys.path[:0] = [{here!r}, {helpers!r}]
    from test_faults import ToyModel, make_runner

    real_fsync = os.fsync

    def fsync(fd):
        # SIGKILL once iter_2.pth is written out but not yet renamed.
        if '.iter_2.pth.' in os.readlink(f'/proc/self/fd/{{fd}}'):
            os.kill(os.getpid(), signal.SIGKILL)
        real_fsync(fd)

    os.fsync = fsync
    make_runner({work_dir!r}, ToyModel('none'), max_keep_ckpts=1).train()
''')


@pytest.mark.skipif(
    not osp.isdir('/proc/self/fd'), reason='finds the file through /proc')
def test_sigkill_while_saving_leaves_the_previous_checkpoint(tmp_path):
    work_dir = tmp_path / 'work'
    here = osp.dirname(osp.abspath(__file__))
    script = KILL_WHILE_SAVING.format(
        here=here, helpers=osp.join(osp.dirname(here), 'helpers'),
        work_dir=str(work_dir))
    proc = subprocess.run([sys.executable, '-c', script],
                          env=tool_env(),
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    files = os.listdir(work_dir)
    # max_keep_ckpts=1: mmengine's own hook deletes iter_1.pth before it
    # writes iter_2.pth, which would leave nothing to resume from.
    assert 'iter_1.pth' in files and 'iter_2.pth' not in files
    assert any(f.startswith('.iter_2.pth.') for f in files)  # killed there
    assert read_last_checkpoint(work_dir) == str(work_dir / 'iter_1.pth')
    setup_checkpoint_io()
    ckpt = CheckpointLoader.load_checkpoint(str(work_dir / 'iter_1.pth'))
    assert ckpt['meta']['iter'] == 1


class RunsCode:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class QuietHandler(http.server.SimpleHTTPRequestHandler):

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_dir(tmp_path, monkeypatch):
    """A folder served over HTTP on localhost; downloads cache in tmp."""
    served = tmp_path / 'served'
    served.mkdir()
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


def test_downloaded_checkpoint_cannot_run_code(http_dir, tmp_path):
    setup_checkpoint_io()
    served, url = http_dir
    torch.save({'state_dict': {'w': torch.ones(2)}}, served / 'good.pth')
    marker = tmp_path / 'pwned'
    torch.save({'state_dict': {}, 'meta': RunsCode(marker)},
               served / 'evil.pth')

    good = CheckpointLoader.load_checkpoint(f'{url}/good.pth')
    assert torch.equal(good['state_dict']['w'], torch.ones(2))
    with pytest.raises(UnsafeCheckpointError) as info:
        CheckpointLoader.load_checkpoint(f'{url}/evil.pth')
    assert f'{url}/evil.pth' in str(info.value)
    assert 'system' in str(info.value)
    assert not marker.exists()


def test_epoch_seed_hook_makes_epochs_draw_the_same_numbers():

    def draws(epoch, noise):
        # ``noise`` draws stand for whatever ran before the epoch.
        np.random.rand(noise)
        torch.rand(noise)
        EpochSeedHook().before_train_epoch(
            SimpleNamespace(seed=0, epoch=epoch))
        return (np.random.rand(), random.random(), torch.rand(1).item())

    assert draws(1, 3) == draws(1, 7)
    assert draws(1, 3) != draws(2, 3)


def test_the_replaced_mmengine_method_is_still_there():
    """tood's CheckpointHook replaces mmengine's private
    ``_save_checkpoint_with_step(runner, step, meta)``; mmengine is pinned
    for it. A new mmengine that renamed or re-shaped the method would leave
    ours uncalled and the checkpoints unsafe again: this says so."""
    import inspect

    import mmengine
    from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook
    assert mmengine.__version__ == '0.10.7'
    params = list(inspect.signature(
        MMEngineCheckpointHook._save_checkpoint_with_step).parameters)
    assert params == ['self', 'runner', 'step', 'meta']
