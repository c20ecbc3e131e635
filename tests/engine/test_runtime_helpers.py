"""Config helpers, AMP selection and CPU DDP wrapping."""
import os.path as osp
import warnings

import pytest
import torch
import torch.distributed as torch_dist
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

from tood.engine import (CPUBFloat16OptimWrapper, amp, merge_cfg_options,
                         missing_dataset_files, setup_amp,
                         setup_cpu_distributed, unknown_cfg_keys)
from tood.utils import register_all_modules

CONFIG = osp.join(
    osp.dirname(__file__), '..', '..', 'configs', 'tood',
    'tood_r50_fpn_1x_coco.py')


def test_unknown_cfg_options_are_named_in_a_warning():
    cfg = Config.fromfile(CONFIG)
    options = {
        'model.backbone.depth': 101,
        'train_dataloader.dataset.pipeline.2.scale': (640, 480),
        'train_cfg.max_epocs': 3,
        'model.bbox_head.nope.x': 1,
        'train_dataloader.dataset.pipeline.9.type': 'Resize',
    }
    assert unknown_cfg_keys(cfg, options) == [
        'train_cfg.max_epocs', 'model.bbox_head.nope.x',
        'train_dataloader.dataset.pipeline.9.type'
    ]
    # A hook added to default_hooks with its type is new on purpose (the
    # documented early-stopping switch); its arguments without the type,
    # or a misspelt argument of an existing hook, are not.
    hook = {
        'default_hooks.early_stopping.type': 'EarlyStoppingHook',
        'default_hooks.early_stopping.monitor': 'coco/bbox_mAP',
        'default_hooks.checkpoint.save_best': 'coco/bbox_mAP',
        'default_hooks.checkpoint.intreval': 2,
        'default_hooks.ealy_stopping.patience': 3,
    }
    assert unknown_cfg_keys(cfg, hook) == [
        'default_hooks.checkpoint.intreval',
        'default_hooks.ealy_stopping.patience'
    ]
    # mmengine itself refuses list indices past the end.
    del options['train_dataloader.dataset.pipeline.9.type']
    with pytest.warns(UserWarning) as record:
        merge_cfg_options(cfg, options)
    message = str(record[0].message)
    assert 'train_cfg.max_epocs' in message
    assert 'model.bbox_head.nope.x' in message
    assert 'model.backbone.depth' not in message
    # Everything is applied, known or not.
    assert cfg.model.backbone.depth == 101
    assert cfg.train_dataloader.dataset.pipeline[2].scale == (640, 480)
    assert cfg.train_cfg.max_epocs == 3


def test_known_cfg_options_do_not_warn():
    cfg = Config.fromfile(CONFIG)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        merge_cfg_options(cfg, {'optim_wrapper.optimizer.lr': 0.005})
    assert cfg.optim_wrapper.optimizer.lr == 0.005


def test_missing_dataset_files_lists_what_the_config_points_at(tmp_path):
    cfg = Config.fromfile(CONFIG)
    root = str(tmp_path) + '/'
    cfg.merge_from_dict({
        'train_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.data_root': root,
        'val_evaluator.ann_file': root + 'annotations/instances_val2017.json',
    })
    missing = missing_dataset_files(cfg, ['train', 'val'])
    assert missing == [
        root + 'annotations/instances_train2017.json', root + 'train2017/',
        root + 'annotations/instances_val2017.json', root + 'val2017/'
    ]
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'annotations' / 'instances_train2017.json').write_text('{}')
    (tmp_path / 'train2017').mkdir()
    assert missing_dataset_files(cfg, ['train']) == []


def test_amp_on_cpu_autocasts_to_bfloat16(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip('the CPU path is taken only without CUDA')
    monkeypatch.setattr(amp, 'cpu_has_native_bfloat16', lambda: True)
    cfg = Config.fromfile(CONFIG)
    assert 'bfloat16' in setup_amp(cfg)
    assert cfg.optim_wrapper.type == 'CPUBFloat16OptimWrapper'
    model = nn.Linear(4, 2)
    register_all_modules()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert isinstance(wrapper, CPUBFloat16OptimWrapper)
    assert wrapper.optimizer.defaults['lr'] == 0.01
    with wrapper.optim_context(model):
        out = model(torch.ones(3, 4))
    assert out.dtype == torch.bfloat16
    weight = model.weight.detach().clone()
    wrapper.update_params(out.float().sum())
    assert model.weight.dtype == torch.float32
    assert not torch.equal(weight, model.weight)


def test_cpu_ddp_wrapper_builds_as_the_runner_builds_it(monkeypatch):
    """One-process gloo group: the CPU wrapper builds the way the Runner
    builds it (with device_ids), and drops them."""
    for key, value in dict(
            RANK='0', WORLD_SIZE='1', LOCAL_RANK='0',
            MASTER_ADDR='127.0.0.1', MASTER_PORT='29561').items():
        monkeypatch.setenv(key, value)
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    try:
        message = setup_cpu_distributed(cfg, 'pytorch')
        if torch.cuda.is_available():
            assert message is None
            pytest.skip('the CPU path is taken only without CUDA')
        assert 'gloo' in message
        assert torch_dist.get_backend() == 'gloo'
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'
        assert cfg.model_wrapper_cfg.type == 'tood.CPUDistributedDataParallel'
        # As Runner.wrap_model looks it up: in mmengine's root registry.
        assert issubclass(
            MMENGINE_MODEL_WRAPPERS.get(cfg.model_wrapper_cfg.type),
            DistributedDataParallel)

        model = nn.Conv2d(1, 1, 1)
        wrapper = MMENGINE_MODEL_WRAPPERS.build(
            cfg.model_wrapper_cfg,
            default_args=dict(module=model, device_ids=[0]))
        assert wrapper.device_ids is None
        assert wrapper.module is model
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def test_slurm_without_cuda_is_refused():
    if torch.cuda.is_available():
        pytest.skip('the CPU path is taken only without CUDA')
    with pytest.raises(ValueError, match='--launcher pytorch'):
        setup_cpu_distributed(Config(dict()), 'slurm')


def test_bfloat16_wrapper_trains_in_float32_without_native_bfloat16(
        monkeypatch):
    # Emulated bfloat16 is slower than float32, so such CPUs keep float32.
    monkeypatch.setattr(amp, 'cpu_has_native_bfloat16', lambda: False)
    model = nn.Linear(4, 2)
    wrapper = CPUBFloat16OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        assert model(torch.ones(3, 4)).dtype == torch.float32


def test_amp_on_cuda_replaces_the_cpu_bfloat16_wrapper(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = Config(dict(optim_wrapper=dict(type='CPUBFloat16OptimWrapper')))
    assert 'float16 autocast' in setup_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config(dict(optim_wrapper=dict(type='CPUBFloat16OptimWrapper')))
    assert 'already uses' in setup_amp(cfg)
