"""PipelineSwitchHook: the new pipeline from the switch epoch on, also in
persistent dataloader workers, inside dataset wrappers and after resume."""
import json
import os.path as osp
import socket

import numpy as np
import pytest
from mmengine.dataset import BaseDataset, ClassBalancedDataset, pseudo_collate
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.runner import IterBasedTrainLoop
from robust_helpers import CONFIG, finish, make_shapes, start, train_args
from torch.utils.data import DataLoader

import tood.datasets  # noqa: F401  (registers the transforms)
from tood.engine.hooks import PipelineSwitchHook
from tood.errors import ConfigError

MOSAIC = [dict(type='CachedMosaic', img_scale=(24, 32)),
          dict(type='PackDetInputs')]
PLAIN = [dict(type='PackDetInputs')]


class ArrayDataset(BaseDataset):
    """Six 24x32 images with one box each, held in memory."""

    def load_data_list(self):
        return [
            dict(
                img=np.full((24, 32, 3), i, np.uint8),
                gt_bboxes=np.array([[1, 1, 9, 9]], np.float32),
                gt_bboxes_labels=np.array([i % 3]),
                gt_ignore_flags=np.array([False]),
                img_id=i) for i in range(6)
        ]

    def get_cat_ids(self, idx):
        return self.get_data_info(idx)['gt_bboxes_labels'].tolist()


class Runner:
    """What the hook reads of mmengine's Runner."""

    def __init__(self, loader, epoch=0, train_loop=None):
        self.train_dataloader = loader
        self.epoch = epoch
        self.max_epochs = 4
        self.train_loop = train_loop
        self.logger = MMLogger.get_current_instance()


def dataset(wrapped=False):
    with DefaultScope.overwrite_default_scope('tood'):
        data = ArrayDataset(pipeline=MOSAIC, serialize_data=False)
        return ClassBalancedDataset(data, oversample_thr=1.0) \
            if wrapped else data


def loader(data, persistent=True):
    return DataLoader(
        data,
        batch_size=3,
        num_workers=1,
        persistent_workers=persistent,
        collate_fn=pseudo_collate)


def train_shapes(hook, runner, epochs):
    """The image sizes of each epoch, as the workers made them."""
    seen = []
    with DefaultScope.overwrite_default_scope('tood'):
        hook.before_train(runner)
    for epoch in range(runner.epoch, epochs):
        runner.epoch = epoch
        hook.before_train_epoch(runner)
        seen.append({
            tuple(img.shape[-2:])
            for batch in runner.train_dataloader for img in batch['inputs']
        })
    return seen


@pytest.mark.parametrize('wrapped', [False, True])
@pytest.mark.parametrize('persistent', [True, False])
def test_switches_in_workers(wrapped, persistent):
    data_loader = loader(dataset(wrapped), persistent)
    runner = Runner(data_loader)
    hook = PipelineSwitchHook(switch_epoch=2, switch_pipeline=PLAIN)
    shapes = train_shapes(hook, runner, 4)
    assert shapes == [{(48, 64)}, {(48, 64)}, {(24, 32)}, {(24, 32)}]
    if persistent:
        data_loader._iterator._shutdown_workers()


def test_persistent_workers_restart_only_at_the_switch():
    data_loader = loader(dataset())
    runner = Runner(data_loader)
    hook = PipelineSwitchHook(switch_epoch=2, switch_pipeline=PLAIN)
    with DefaultScope.overwrite_default_scope('tood'):
        hook.before_train(runner)
    iterators = []
    for epoch in range(4):
        runner.epoch = epoch
        hook.before_train_epoch(runner)
        list(data_loader)
        iterators.append(data_loader._iterator)
    assert iterators[0] is iterators[1]
    assert iterators[1] is not iterators[2]
    assert iterators[2] is iterators[3]
    data_loader._iterator._shutdown_workers()


def test_resumed_after_the_switch_epoch():
    data_loader = loader(dataset(), persistent=False)
    runner = Runner(data_loader, epoch=3)
    hook = PipelineSwitchHook(switch_epoch=2, switch_pipeline=PLAIN)
    assert train_shapes(hook, runner, 4) == [{(24, 32)}]


def test_user_errors():
    with pytest.raises(ConfigError, match='switch_epoch'):
        PipelineSwitchHook(switch_epoch=-1, switch_pipeline=PLAIN)
    hook = PipelineSwitchHook(switch_epoch=1, switch_pipeline=PLAIN)
    bad = PipelineSwitchHook(switch_epoch=1,
                             switch_pipeline=[dict(type='NoSuchTransform')])
    iteration_loop = object.__new__(IterBasedTrainLoop)
    with DefaultScope.overwrite_default_scope('tood'):
        with pytest.raises(ConfigError, match='no pipeline'):
            hook.before_train(Runner(loader([1, 2, 3])))
        with pytest.raises(ConfigError, match='max_epochs'):
            hook.before_train(
                Runner(loader(dataset()), train_loop=iteration_loop))
        with pytest.raises(KeyError, match='NoSuchTransform'):
            bad.before_train(Runner(loader(dataset())))


# Through tools/train.py: ClassBalancedDataset over COCO, CachedMosaic of
# the 64x64 shapes fitted into 48x48 tiles (96x96 mosaics), a persistent
# worker, the switch at epoch 1 (of 2 and, resumed, of 3).
def switch_config(tmp_path) -> str:
    lines = f"""
_base_ = {CONFIG!r}
custom_imports = dict(imports=['shape_recorder'])
load = [dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True)]
pack = [dict(type='PackDetInputs')]
train_dataloader = dict(
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        _delete_=True,
        type='ClassBalancedDataset',
        oversample_thr=0.5,
        dataset=dict(
            type='CocoDataset',
            data_root='',
            ann_file='annotations/instances_train.json',
            data_prefix=dict(img='train/'),
            filter_cfg=dict(filter_empty_gt=True, min_size=0),
            pipeline=load + [dict(type='CachedMosaic', img_scale=(48, 48),
                                  max_cached_images=4)] + pack)))
custom_hooks = [
    dict(type='ShapeRecorderHook'),
    dict(type='PipelineSwitchHook', switch_epoch=1,
         switch_pipeline=load + pack)
]
"""
    path = tmp_path / 'switch_config.py'
    path.write_text(lines)
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def train_shapes_seen(tmp_path, *options, nproc=1, resume=None):
    """Train the switch config; (epoch, image size) pairs per rank."""
    shapes_root = str(tmp_path / 'shapes')
    if not osp.isdir(shapes_root):
        make_shapes(shapes_root)
    cfg = switch_config(tmp_path)
    work = str(tmp_path / 'work')
    args = train_args(work, *options, nproc=nproc, port=free_port())
    args[args.index(CONFIG)] = cfg
    if resume:
        args += ['--resume', osp.join(work, resume)]
    code, out = finish(start(args, shapes_root))
    assert code == 0, out
    seen = []
    for rank in range(nproc):
        with open(osp.join(work, f'shapes_rank{rank}.json')) as f:
            seen.append({(epoch, tuple(size))
                         for epoch, sizes in json.load(f)
                         for size in sizes})
    return seen


@pytest.mark.e2e
def test_train_tool_switches_mosaic_off(tmp_path):
    assert train_shapes_seen(tmp_path) == [{(0, (96, 96)), (1, (64, 64))}]
    assert train_shapes_seen(
        tmp_path, 'train_cfg.max_epochs=3',
        resume='epoch_2.pth') == [{(2, (64, 64))}]


@pytest.mark.e2e
def test_train_tool_switches_mosaic_off_in_two_processes(tmp_path):
    # DDP (gloo on the CPU): each process samples its share of the
    # class-balanced epoch and switches its own worker.
    assert train_shapes_seen(tmp_path, nproc=2) == [
        {(0, (96, 96)), (1, (64, 64))}
    ] * 2
