"""Safe loading of mmengine checkpoints with torch's weights_only loader,
safe downloads, atomic saving, and an import that changes nothing global."""
import json
import os
import pickle
import subprocess
import sys
import urllib.error

import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import CheckpointLoader, Runner
from torch.utils.data import Dataset

from tood.engine import load_from_local, load_pickle, setup_checkpoint_io
from tood.engine.checkpoint import safe_globals
from tood.errors import ModelDownloadError, UnsafeCheckpointError


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
        default_hooks=dict(checkpoint=kwargs.pop(
            'checkpoint', dict(type='CheckpointHook', interval=1))),
        randomness=dict(seed=0),
        # Leaves 'tood' the current scope for the tests that follow.
        default_scope='tood',
        **kwargs)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    setup_checkpoint_io()
    work_dir = tmp_path_factory.mktemp('ckpt')
    make_runner(work_dir, 1, 'save-ckpt').train()
    return str(work_dir / 'epoch_1.pth')


def test_runner_checkpoint_needs_and_passes_the_allow_list(checkpoint):
    # Nothing is allowed globally: the allow-list holds only inside our
    # loaders.
    assert HistoryBuffer not in torch.serialization.get_safe_globals()
    needed = set(
        torch.serialization.get_unsafe_globals_in_checkpoint(checkpoint))
    # torch's defaults alone refuse mmengine's checkpoints...
    with pytest.raises(pickle.UnpicklingError):
        torch.load(checkpoint, weights_only=True)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed

    allowed = set()
    for item in safe_globals():
        if isinstance(item, tuple):
            allowed.add(item[1])
        else:
            allowed.add(f'{item.__module__}.{item.__qualname__}')
    # ...and our list covers all they need.
    assert needed <= allowed, needed - allowed

    ckpt = load_from_local(checkpoint)
    assert HistoryBuffer not in torch.serialization.get_safe_globals()
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
    saved = load_from_local(checkpoint)['state_dict']
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


class WritesFiles:

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        # torch words this refusal differently from a blocked module's.
        return (open, (self.marker, 'w'))


@pytest.mark.parametrize('payload', ['code', 'getattr', 'open'])
def test_malicious_checkpoint_is_refused_with_its_name(tmp_path, payload):
    setup_checkpoint_io()
    marker = tmp_path / 'pwned'
    path = tmp_path / f'evil_{payload}.pth'
    obj = dict(code=RunsCode(marker), getattr=ReachesAttributes(),
               open=WritesFiles(marker))[payload]
    torch.save({'state_dict': {}, 'meta': obj}, path)

    with pytest.raises(UnsafeCheckpointError) as info:
        CheckpointLoader.load_checkpoint(str(path))
    assert str(path) in str(info.value)
    # One line, without torch's advice to turn the check off.
    assert 'weights_only' not in str(info.value)
    assert '\n' not in str(info.value)
    # The reason names what was refused.
    assert dict(code='system', getattr='__init__',
                open='io.open')[payload] in str(info.value)
    assert isinstance(info.value, pickle.UnpicklingError)
    assert not marker.exists()


def test_a_pickle_of_tensors_arrays_and_containers_loads(tmp_path):
    from mmengine.fileio import dump
    import numpy as np
    data = [dict(img_id=3, ori_shape=(4, 5), scale_factor=(0.5, 2.0),
                 pred_instances=dict(bboxes=torch.rand(2, 4),
                                     labels=torch.tensor([1, 0]),
                                     mask=torch.tensor([True, False])),
                 extra=np.arange(3.0), name='a.jpg')]
    path = str(tmp_path / 'preds.pkl')
    dump(data, path)  # as tools/test.py --out preds.pkl writes it
    loaded = load_pickle(path)
    assert loaded[0]['ori_shape'] == (4, 5) and loaded[0]['name'] == 'a.jpg'
    for key, value in data[0]['pred_instances'].items():
        assert torch.equal(loaded[0]['pred_instances'][key], value)
    assert np.array_equal(loaded[0]['extra'], data[0]['extra'])


def test_a_pickle_that_runs_code_is_refused_by_name(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pkl'
    with open(path, 'wb') as f:
        pickle.dump({'a': RunsCode(marker)}, f)
    with pytest.raises(UnsafeCheckpointError,
                       match=f"Refusing to load pickle '{path}'.*system"):
        load_pickle(str(path))
    assert not marker.exists()


class PetrelStandIn:
    """mmengine's petrel backend (s3://, petrel://) without petrel_client:
    serves the bytes of local files by their s3 name."""
    files = {}

    def __init__(self, **kwargs):
        pass

    def get(self, filepath):
        with open(self.files[str(filepath)], 'rb') as f:
            return f.read()


@pytest.mark.parametrize('scheme', ['s3://', 'petrel://', 'cluster1:s3://'])
def test_object_storage_checkpoints_go_through_the_allow_list(
        tmp_path, monkeypatch, checkpoint, scheme):
    from mmengine.fileio.backends import backends
    monkeypatch.setitem(backends, 'petrel', PetrelStandIn)
    # mmengine's own loader would call torch.load without weights_only,
    # which this switch turns into an unrestricted unpickler.
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': RunsCode(marker)}, evil)
    monkeypatch.setattr(PetrelStandIn, 'files', {
        f'{scheme}bucket/evil.pth': str(evil),
        f'{scheme}bucket/good.pth': checkpoint})
    setup_checkpoint_io()

    with pytest.raises(UnsafeCheckpointError,
                       match=f"Refusing to load checkpoint '{scheme}bucket"):
        CheckpointLoader.load_checkpoint(f'{scheme}bucket/evil.pth')
    assert not marker.exists()
    # A checkpoint of our runner loads.
    loaded = CheckpointLoader.load_checkpoint(f'{scheme}bucket/good.pth')
    assert 'state_dict' in loaded


def test_pavi_checkpoints_are_refused_by_name():
    setup_checkpoint_io()
    with pytest.raises(UnsafeCheckpointError, match="'pavi://model/1'.*"
                       'Download the file'):
        CheckpointLoader.load_checkpoint('pavi://model/1')


def test_a_global_allow_list_entry_of_the_caller_survives_our_loader(
        checkpoint):
    torch.serialization.add_safe_globals([HistoryBuffer])
    try:
        load_from_local(checkpoint)
        assert HistoryBuffer in torch.serialization.get_safe_globals()
    finally:
        torch.serialization.clear_safe_globals()


# Run in a fresh interpreter: other tests set up checkpoint loading in this
# one.
IMPORT_PROBE = """
import json, sys
import torch
import mmengine.fileio.backends as fileio_backends
import mmengine.runner.checkpoint as mmengine_checkpoint
from mmengine.runner import CheckpointLoader


def state():
    return dict(
        schemes={p: f'{l.__module__}.{l.__name__}'
                 for p, l in CheckpointLoader._schemes.items()},
        backends={n: f'{b.__module__}.{b.__name__}'
                  for n, b in fileio_backends.backends.items()},
        prefixes={p: f'{b.__module__}.{b.__name__}'
                  for p, b in fileio_backends.prefix_to_backends.items()},
        # torch adds its own classes when its submodules are imported.
        safe_globals=sorted(
            str(g) for g in torch.serialization.get_safe_globals()
            if not str(g).startswith("<class 'torch.")),
        load_url=f'{mmengine_checkpoint.load_url.__module__}.'
        f'{mmengine_checkpoint.load_url.__name__}')


before = state()
import tood, tood.models, tood.datasets, tood.engine, tood.evaluation
import tood.apis
from tood.utils import register_all_modules
register_all_modules()
after_import = state()
tood.engine.setup_checkpoint_io()
after_setup = state()
json.dump(dict(before=before, after_import=after_import,
               after_setup=after_setup), sys.stdout)
"""


@pytest.mark.e2e
def test_importing_the_library_changes_nothing_global():
    proc = subprocess.run([sys.executable, '-c', IMPORT_PROBE],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = json.loads(proc.stdout)
    assert states['after_import'] == states['before']
    # The explicit set-up replaces the loaders of mmengine's schemes, and
    # nothing else: no backend, no global allow-list, no rebinding.
    setup = states['after_setup']
    assert set(setup['schemes']) == set(states['before']['schemes'])
    for prefix in ('', 'http://', 'https://', 'torchvision://',
                   'open-mmlab://', 'mmcls://', 'pavi://',
                   r'(\S+\:)?s3://', r'(\S+\:)?petrel://'):
        assert setup['schemes'][prefix].startswith('tood.engine.checkpoint')
    for key in ('backends', 'prefixes', 'safe_globals', 'load_url'):
        assert setup[key] == states['before'][key], key


def test_offline_download_names_the_file_the_cache_and_the_ways_on(
        tmp_path, monkeypatch):
    """No test touches the network: the download is made to fail."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    attempts = []

    def offline(url, dst, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError('[Errno -3] Temporary failure in name '
                                    'resolution')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)
    setup_checkpoint_io()
    with pytest.raises(ModelDownloadError) as info:
        CheckpointLoader.load_checkpoint('torchvision://resnet50')
    message = str(info.value)
    url = attempts[0]
    assert url.startswith('https://') and url.endswith('.pth')
    file_name = url.rsplit('/', 1)[1]
    cached = os.path.join(torch.hub.get_dir(), 'checkpoints', file_name)
    assert cached.startswith(str(tmp_path))
    assert 'torchvision://resnet50' in message and url in message
    assert cached in message
    assert 'Temporary failure in name resolution' in message
    assert 'model.backbone.init_cfg.checkpoint=' in message
    assert 'model.backbone.init_cfg=None' in message

    # A copy in the hub cache is used without the network.
    torch.save({'conv1.weight': torch.ones(1)}, cached)
    state = CheckpointLoader.load_checkpoint('torchvision://resnet50')
    assert torch.equal(state['conv1.weight'], torch.ones(1))
    assert len(attempts) == 1


def test_checkpoint_hook_saves_through_the_atomic_backend(tmp_path):
    from mmengine.fileio import LocalBackend
    from mmengine.fileio.backends import backends, prefix_to_backends

    from tood.engine.checkpoint import AtomicLocalBackend
    from tood.engine.hooks import CheckpointHook
    hook = CheckpointHook(interval=1)
    runner = make_runner(tmp_path, 1, 'atomic', checkpoint=hook)
    puts = []
    original = AtomicLocalBackend.put

    def put(self, obj, filepath):
        puts.append(os.path.basename(filepath))
        original(self, obj, filepath)

    AtomicLocalBackend.put = put
    try:
        runner.train()
    finally:
        AtomicLocalBackend.put = original
    assert hook.backend_args == dict(backend='atomic_local')
    assert 'epoch_1.pth' in puts
    # mmengine's own local backend is left as it was.
    assert backends['local'] is LocalBackend
    assert prefix_to_backends[''] is LocalBackend
