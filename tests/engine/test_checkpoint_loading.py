"""Safe loading of mmengine checkpoints with torch's weights_only loader."""
import os
import pickle

import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import CheckpointLoader, Runner
from torch.utils.data import Dataset

from tood.engine import register_safe_globals
from tood.errors import UnsafeCheckpointError
from tood.engine.checkpoint import safe_globals


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=out.pow(2).mean())
        return out


class ToyDataset(Dataset):
    metainfo = dict(classes=('a', 'b'), palette=[(1, 2, 3), (4, 5, 6)])

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return dict(inputs=torch.full((2, ), float(index)))


def make_runner(work_dir, max_epochs, name, **kwargs):
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=2),
            dict(type='MultiStepLR', milestones=[1], by_epoch=True)
        ],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        randomness=dict(seed=0),
        **kwargs)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    register_safe_globals()
    work_dir = tmp_path_factory.mktemp('ckpt')
    make_runner(work_dir, 1, 'save-ckpt').train()
    return str(work_dir / 'epoch_1.pth')


def test_runner_checkpoint_needs_and_passes_the_allow_list(checkpoint):
    registered = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        needed = set(
            torch.serialization.get_unsafe_globals_in_checkpoint(checkpoint))
        # torch's defaults alone refuse mmengine's checkpoints...
        with pytest.raises(pickle.UnpicklingError):
            torch.load(checkpoint, weights_only=True)
    finally:
        torch.serialization.add_safe_globals(registered)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed

    allowed = set()
    for item in safe_globals():
        if isinstance(item, tuple):
            allowed.add(item[1])
        else:
            allowed.add(f'{item.__module__}.{item.__qualname__}')
    # ...and our list covers all they need.
    assert needed <= allowed, needed - allowed

    ckpt = torch.load(checkpoint, weights_only=True)
    assert ckpt['meta']['epoch'] == 1
    assert ckpt['meta']['dataset_meta']['classes'] == ('a', 'b')
    lr = ckpt['message_hub']['log_scalars']['train/lr']
    assert isinstance(lr, HistoryBuffer)
    # The restored buffer still computes its statistics.
    assert lr.statistics('current') == pytest.approx(0.01)


def test_resume_and_load_from_go_through_the_safe_loader(checkpoint,
                                                        tmp_path):
    loader = CheckpointLoader._get_checkpoint_loader(checkpoint)
    assert loader.__module__ == 'tood.engine.checkpoint'

    runner = make_runner(
        tmp_path, 2, 'resume', load_from=checkpoint, resume=True)
    runner.train()
    assert runner.epoch == 2
    assert os.path.isfile(tmp_path / 'epoch_2.pth')
    assert not os.path.isfile(tmp_path / 'epoch_1.pth')

    runner = make_runner(tmp_path / 'load', 1, 'load', load_from=checkpoint)
    runner.load_or_resume()
    saved = torch.load(checkpoint, weights_only=True)['state_dict']
    assert torch.equal(runner.model.linear.weight, saved['linear.weight'])


class RunsCode:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class ReachesAttributes:

    def __reduce__(self):
        # Allowed name, but not one of HistoryBuffer's statistics methods.
        return (getattr, (HistoryBuffer, '__init__'))


@pytest.mark.parametrize('payload', ['code', 'getattr'])
def test_malicious_checkpoint_is_refused_with_its_name(tmp_path, payload):
    register_safe_globals()
    marker = tmp_path / 'pwned'
    path = tmp_path / f'evil_{payload}.pth'
    obj = RunsCode(marker) if payload == 'code' else ReachesAttributes()
    torch.save({'state_dict': {}, 'meta': obj}, path)

    with pytest.raises(UnsafeCheckpointError) as info:
        CheckpointLoader.load_checkpoint(str(path))
    assert str(path) in str(info.value)
    assert 'weights_only=False' not in str(info.value)
    # The reason names what was refused.
    assert ('system' if payload == 'code' else '__init__') in str(info.value)
    assert isinstance(info.value, pickle.UnpicklingError)
    assert not marker.exists()
