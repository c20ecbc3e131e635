"""``--amp [float16|bfloat16]``: the optimizer wrapper each choice sets, on
CUDA (simulated: the settings are config edits) and on the CPU."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from tood.engine import CUDA_AMP_SETTINGS, setup_amp
from tood.errors import ConfigError

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def wrapper(type_name: str = 'OptimWrapper', **extra) -> Config:
    return Config(
        dict(optim_wrapper=dict(type=type_name, optimizer=dict(lr=0.01),
                                **extra)))


@pytest.fixture
def on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)


@pytest.fixture
def on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)


def test_bfloat16_on_cuda_autocasts_without_loss_scaling(on_cuda):
    for start in ('OptimWrapper', 'CPUBFloat16OptimWrapper',
                  'AmpOptimWrapper'):
        cfg = wrapper(start)
        assert 'bfloat16 autocast on CUDA' in setup_amp(cfg, 'bfloat16')
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper.dtype == 'bfloat16'
        assert cfg.optim_wrapper.loss_scale == 1.0
        assert cfg.optim_wrapper.optimizer.lr == 0.01


def test_float16_on_cuda_has_a_dynamic_loss_scale(on_cuda):
    for dtype in (None, 'float16'):
        cfg = wrapper()
        assert 'float16 autocast with a dynamic loss scale' in setup_amp(
            cfg, dtype)
        assert {k: cfg.optim_wrapper[k] for k in ('type', 'dtype',
                                                  'loss_scale')} == \
            CUDA_AMP_SETTINGS['float16']
    # A config's own AmpOptimWrapper keeps its loss scale.
    cfg = wrapper('AmpOptimWrapper', loss_scale=512.0)
    setup_amp(cfg, 'float16')
    assert cfg.optim_wrapper.loss_scale == 512.0
    assert cfg.optim_wrapper.dtype == 'float16'


def test_the_cpu_refuses_float16_and_cuda_wrappers(on_cpu):
    with pytest.raises(ConfigError, match='needs a CUDA device'):
        setup_amp(wrapper(), 'float16')
    with pytest.raises(ConfigError, match='AmpOptimWrapper needs a CUDA'):
        setup_amp(wrapper('AmpOptimWrapper'))
    with pytest.raises(ConfigError, match='cannot convert'):
        setup_amp(wrapper('ApexOptimWrapper'))
    with pytest.raises(ConfigError, match='float16 or bfloat16'):
        setup_amp(wrapper(), 'fp8')
    cfg = wrapper()
    assert 'bfloat16 autocast on the CPU' in setup_amp(cfg, 'bfloat16')
    assert cfg.optim_wrapper.type == 'CPUBFloat16OptimWrapper'


def test_train_tool_takes_an_optional_dtype(on_cpu):
    spec = importlib.util.spec_from_file_location(
        'tood_tools_train', osp.join(REPO, 'tools', 'train.py'))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    config = osp.join(REPO, 'configs', 'tood', 'tood_r50_fpn_1x_coco.py')
    assert train.parse_args([config]).amp is None
    assert train.parse_args([config, '--amp']).amp == 'auto'
    assert train.parse_args([config, '--amp', 'bfloat16']).amp == 'bfloat16'
    with pytest.raises(SystemExit, match='needs a CUDA device'):
        train.main([config, '--amp', 'float16'])


def test_bfloat16_autocast_on_the_cpu_keeps_losses_finite(monkeypatch,
                                                          set_epoch):
    """The optimizer wrapper of --amp on the CPU: the forward really runs
    in bfloat16, and TOOD's losses (ATSS warm-up and TAL) and gradients
    stay finite."""
    from tood.analysis.benchmarking import detection_batch
    from tood.apis import init_detector
    from tood.engine import amp
    monkeypatch.setattr(amp, 'cpu_has_native_bfloat16', lambda: True)
    model = init_detector(
        osp.join(REPO, 'configs', 'tood', 'tood_r50_fpn_1x_coco.py'), None,
        'cpu', {'model.backbone.depth': 18, 'model.neck.out_channels': 16,
                'model.neck.in_channels': [64, 128, 256, 512],
                'model.bbox_head.in_channels': 16,
                'model.bbox_head.feat_channels': 16,
                'model.bbox_head.stacked_convs': 2,
                'model.bbox_head.norm_cfg.num_groups': 4,
                'model.bbox_head.num_classes': 3}).train()
    wrapper = amp.CPUBFloat16OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    data = detection_batch(2, (64, 96), 3, num_classes=3)
    with wrapper.optim_context(model):
        inputs = model.data_preprocessor(data, True)['inputs']
        assert model.extract_feat(inputs)[0].dtype == torch.bfloat16
    for epoch in (0, model.bbox_head.criterion.initial_epoch):  # ATSS, TAL
        set_epoch(epoch)
        log_vars = model.train_step(data, wrapper)
        assert all(torch.isfinite(v) for v in log_vars.values())
        assert log_vars['loss_cls'].item() > 0
        assert all(torch.isfinite(p).all() for p in model.parameters())
