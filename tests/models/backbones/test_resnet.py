import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision
from torch.nn.modules.batchnorm import _BatchNorm

import tood.models  # noqa: F401  (registers everything)
import tood.models.backbones.resnet as resnet_module
from tood.models.backbones import ResNet, ResNeXt, convert_torchvision_resnet
from tood.models.layers import ModulatedDeformConv2d
from tood.registry import MODELS

# Narrow networks keep the tests fast; channel counts scale with the base.
SMALL = dict(stem_channels=8, base_channels=8)


@pytest.mark.parametrize('depth,expansion', [(18, 1), (34, 1), (50, 4),
                                             (101, 4), (152, 4)])
def test_output_shapes_every_depth(depth, expansion):
    model = ResNet(depth, **SMALL)
    outs = model(torch.randn(1, 3, 64, 64))
    assert len(outs) == 4
    for i, out in enumerate(outs):
        assert out.shape == (1, 8 * 2**i * expansion, 16 // 2**i, 16 // 2**i)
    assert model.feat_dim == 64 * expansion
    # Block counts of the published architectures.
    blocks = ResNet.arch_settings[depth][1]
    assert tuple(len(getattr(model, f'layer{i + 1}'))
                 for i in range(4)) == blocks


def test_resnet50_channels_names_and_parameter_count():
    model = MODELS.build(dict(type='ResNet', depth=50))
    assert isinstance(model, ResNet)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 23_508_032  # torchvision resnet50 minus fc
    outs = model(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [256, 512, 1024, 2048]
    assert [o.shape[-1] for o in outs] == [8, 4, 2, 1]
    tv = torchvision.models.resnet50(weights=None)
    expected = {
        k: v.shape
        for k, v in tv.state_dict().items() if not k.startswith('fc.')
    }
    assert {k: v.shape for k, v in model.state_dict().items()} == expected


def test_out_indices_and_num_stages():
    model = ResNet(50, num_stages=3, out_indices=(1, 2), **SMALL)
    assert not hasattr(model, 'layer4')
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1:] for o in outs] == [(64, 8, 8), (128, 4, 4)]
    with pytest.raises(ValueError):
        ResNet(50, num_stages=3, out_indices=(3, ))
    with pytest.raises(KeyError):
        ResNet(42)


def test_default_init():
    model = ResNet(50, **SMALL)
    for m in model.modules():
        if isinstance(m, resnet_module.Bottleneck):
            assert m.bn3.weight.abs().sum() == 0  # zero_init_residual
            assert torch.all(m.bn1.weight == 1) and torch.all(m.bn1.bias == 0)
    conv = model.layer3[0].conv2  # 32 -> 32, 3x3: fan_out = 32 * 9
    assert conv.weight.std().item() == pytest.approx(
        (2 / (32 * 9))**0.5, rel=0.15)
    model = ResNet(18, zero_init_residual=False, **SMALL)
    assert torch.all(model.layer1[0].bn2.weight == 1)


def test_frozen_stages():
    # zero_init_residual would zero the residual branches' gradients.
    model = ResNet(
        18, frozen_stages=1, norm_eval=False, zero_init_residual=False,
        **SMALL)
    model.train()
    frozen = [model.conv1, model.bn1, model.layer1]
    for m in frozen:
        assert all(not p.requires_grad for p in m.parameters())
        assert all(not sub.training for sub in m.modules())
    for name in ('layer2', 'layer3', 'layer4'):
        layer = getattr(model, name)
        assert all(p.requires_grad for p in layer.parameters())
        assert all(sub.training for sub in layer.modules())
    stem_mean = model.bn1.running_mean.clone()
    layer2_mean = model.layer2[0].bn1.running_mean.clone()
    sum(o.sum() for o in model(torch.randn(2, 3, 32, 32))).backward()
    assert all(p.grad is None for m in frozen for p in m.parameters())
    assert model.layer2[0].conv1.weight.grad.abs().sum() > 0
    # Frozen BN keeps its statistics, trainable ones update them.
    assert torch.equal(model.bn1.running_mean, stem_mean)
    assert not torch.equal(model.layer2[0].bn1.running_mean, layer2_mean)
    with pytest.raises(ValueError):
        ResNet(18, num_stages=2, out_indices=(0, ), frozen_stages=3)


def test_norm_eval_keeps_running_stats():
    model = ResNet(18, norm_eval=True, zero_init_residual=False, **SMALL)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not bn.training for bn in bns)
    assert model.training and model.layer1.training
    stats = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in bns]
    outs = model(torch.randn(2, 3, 32, 32))
    sum(o.sum() for o in outs).backward()
    for bn, (mean, var) in zip(bns, stats):
        assert torch.equal(bn.running_mean, mean)
        assert torch.equal(bn.running_var, var)
    # Affine parameters still learn.
    assert model.layer4[0].bn1.weight.requires_grad
    assert model.layer4[0].bn1.weight.grad.abs().sum() > 0

    model = ResNet(18, norm_eval=False, **SMALL).train()
    mean = model.bn1.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert not torch.equal(model.bn1.running_mean, mean)


def test_caffe_vs_pytorch_style():
    pytorch = ResNet(50, style='pytorch', **SMALL)
    caffe = ResNet(50, style='caffe', **SMALL)
    for i in (2, 3, 4):
        p_block = getattr(pytorch, f'layer{i}')[0]
        c_block = getattr(caffe, f'layer{i}')[0]
        assert p_block.conv1.stride == (1, 1)
        assert p_block.conv2.stride == (2, 2)
        assert c_block.conv1.stride == (2, 2)
        assert c_block.conv2.stride == (1, 1)
        assert p_block.downsample[0].stride == (2, 2)
        assert c_block.downsample[0].stride == (2, 2)
    x = torch.randn(1, 3, 64, 64)
    assert [o.shape for o in pytorch(x)] == [o.shape for o in caffe(x)]


def test_dilation():
    model = ResNet(
        50, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2), **SMALL)
    conv = model.layer4[1].conv2
    assert conv.dilation == (2, 2) and conv.padding == (2, 2)
    outs = model(torch.randn(1, 3, 64, 64))
    assert outs[3].shape == (1, 256, 4, 4)


def test_dcn_stages():
    dcn = dict(type='DCNv2', deform_groups=1, fallback_on_stride=False)
    model = ResNet(
        50,
        dcn=dcn,
        stage_with_dcn=(False, True, True, True),
        zero_init_residual=False,
        **SMALL)
    assert dcn == dict(type='DCNv2', deform_groups=1,
                       fallback_on_stride=False)  # not mutated
    for block in model.layer1:
        assert type(block.conv2) is nn.Conv2d
    for name in ('layer2', 'layer3', 'layer4'):
        for block in getattr(model, name):
            assert isinstance(block.conv2, ModulatedDeformConv2d)
            assert block.conv2.bias is None
            # The Kaiming init must not overwrite the zero offset init.
            assert block.conv2.conv_offset.weight.abs().sum() == 0
    assert model.layer2[0].conv2.stride == (2, 2)
    assert 'layer3.0.conv2.conv_offset.weight' in model.state_dict()
    model.train()
    outs = model(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [32, 64, 128, 256]
    sum(o.sum() for o in outs).backward()
    assert model.layer3[1].conv2.conv_offset.weight.grad.abs().sum() > 0

    # fallback_on_stride keeps the strided 3x3 convs plain.
    model = ResNet(
        50,
        dcn=dict(type='DCNv2', fallback_on_stride=True),
        stage_with_dcn=(False, True, False, False),
        **SMALL)
    assert type(model.layer2[0].conv2) is nn.Conv2d
    assert isinstance(model.layer2[1].conv2, ModulatedDeformConv2d)

    with pytest.raises(ValueError):
        ResNet(18, dcn=dcn, stage_with_dcn=(True, False, False, False))


def test_other_norms():
    model = ResNet(
        50, norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
        **SMALL)
    assert isinstance(model.layer1[0].gn1, nn.GroupNorm)
    assert 'layer1.0.gn3.weight' in model.state_dict()
    assert isinstance(model.layer1[0].downsample[1], nn.GroupNorm)
    assert model(torch.randn(1, 3, 32, 32))[3].shape == (1, 256, 1, 1)
    model = ResNet(18, norm_cfg=dict(type='SyncBN'), **SMALL)
    assert isinstance(model.layer2[0].bn1, nn.SyncBatchNorm)
    model = ResNet(18, norm_cfg=dict(type='BN', requires_grad=False), **SMALL)
    assert not model.layer2[0].bn1.weight.requires_grad


@pytest.fixture(scope='module')
def perturbed_resnet18() -> nn.Module:
    """torchvision's ResNet-18 with every tensor moved off its default init,
    so a parameter that is not loaded cannot match by chance."""
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        for p in tv.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for name, b in tv.named_buffers():
            if 'running_var' in name:
                b.copy_(torch.rand_like(b) + 0.5)
            elif 'running_mean' in name:
                b.copy_(torch.randn_like(b) * 0.1)
    return tv.eval()


def _tv_features(tv: nn.Module, x: torch.Tensor):
    x = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
    outs = []
    for i in range(1, 5):
        x = getattr(tv, f'layer{i}')(x)
        outs.append(x)
    return outs


@pytest.mark.parametrize('wrap', ['raw', 'state_dict_module', 'torchvision'])
def test_load_torchvision_resnet18(tmp_path, monkeypatch, wrap,
                                   perturbed_resnet18):
    tv = perturbed_resnet18
    state_dict = tv.state_dict()
    if wrap == 'state_dict_module':
        checkpoint = {
            'state_dict': {f'module.{k}': v
                           for k, v in state_dict.items()},
            'meta': {'epoch': 3}
        }
    else:
        checkpoint = state_dict
    if wrap == 'torchvision':
        # torchvision:// resolves to torch hub's cache; plant the file there
        # under the name of torchvision's resnet18 URL (no download).
        monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path))
        (tmp_path / 'checkpoints').mkdir()
        path = tmp_path / 'checkpoints' / 'resnet18-f37072fd.pth'
        source = 'torchvision://resnet18'
    else:
        path = tmp_path / 'resnet18.pth'
        source = str(path)
    torch.save(checkpoint, path)

    model = MODELS.build(
        dict(
            type='ResNet',
            depth=18,
            init_cfg=dict(type='Pretrained', checkpoint=source)))
    model.init_weights()
    ours = model.state_dict()
    assert set(ours) == {k for k in state_dict if not k.startswith('fc.')}
    for key, value in ours.items():
        assert torch.equal(value, state_dict[key]), key

    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), _tv_features(tv, x)):
            assert torch.allclose(a, b, atol=1e-5)


def test_load_logs_missing_and_unexpected_keys(tmp_path, monkeypatch,
                                               perturbed_resnet18):
    state_dict = convert_torchvision_resnet(perturbed_resnet18.state_dict())
    del state_dict['layer4.1.bn2.bias']
    state_dict['extra.weight'] = torch.zeros(1)
    path = tmp_path / 'ckpt.pth'
    torch.save(state_dict, path)
    messages = []
    monkeypatch.setattr(resnet_module, 'print_log',
                        lambda msg, **kwargs: messages.append(msg))
    model = ResNet(
        18, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert any('missing' in m and 'layer4.1.bn2.bias' in m for m in messages)
    assert any('unexpected' in m and 'extra.weight' in m for m in messages)
    assert torch.equal(model.layer4[1].bn2.weight,
                       state_dict['layer4.1.bn2.weight'])


def test_load_detector_checkpoint(tmp_path):
    # A detector checkpoint: backbone.* keys next to neck keys.
    backbone = ResNet(18, **SMALL)
    with torch.no_grad():
        for p in backbone.parameters():
            p.normal_()
    state_dict = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state_dict['neck.lateral_convs.0.conv.weight'] = torch.zeros(2)
    path = tmp_path / 'detector.pth'
    torch.save({'state_dict': state_dict, 'meta': {'epoch': 12}}, path)
    model = ResNet(
        18, init_cfg=dict(type='Pretrained', checkpoint=str(path)), **SMALL)
    model.init_weights()
    for key, value in backbone.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


class Payload:
    """Stands for an arbitrary pickled object in a checkpoint."""


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / 'odd.pth'
    torch.save({'state_dict': {}, 'meta': Payload()}, path)
    model = ResNet(
        18, init_cfg=dict(type='Pretrained', checkpoint=str(path)), **SMALL)
    with pytest.raises(pickle.UnpicklingError):
        model.init_weights()


def test_missing_checkpoint_raises(tmp_path):
    path = str(tmp_path / 'nope.pth')
    model = ResNet(18, init_cfg=dict(type='Pretrained', checkpoint=path),
                   **SMALL)
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        model.init_weights()


def test_convert_torchvision_resnet():
    state_dict = {
        'module.conv1.weight': torch.ones(1),
        'fc.weight': torch.ones(1),
        'fc.bias': torch.ones(1),
        'layer1.0.bn1.num_batches_tracked': torch.tensor(3),
    }
    converted = convert_torchvision_resnet(state_dict)
    assert list(converted) == ['conv1.weight',
                               'layer1.0.bn1.num_batches_tracked']


def _shapes(module: nn.Module):
    return {
        k: tuple(v.shape)
        for k, v in module.state_dict().items() if not k.startswith('fc.')
    }


def test_resnext50_32x4d_matches_torchvision():
    model = MODELS.build(
        dict(type='ResNeXt', depth=50, groups=32, base_width=4))
    assert isinstance(model, ResNeXt)
    ours = _shapes(model)
    theirs = _shapes(torchvision.models.resnext50_32x4d(weights=None))
    assert list(ours) == list(theirs)
    for key in theirs:
        assert ours[key] == theirs[key], key
    assert model.layer1[0].conv2.groups == 32
    assert model.layer1[0].conv2.weight.shape == (128, 4, 3, 3)


def test_resnext101_64x4d_matches_torchvision():
    # Meta tensors: shapes without allocating 80 M parameters.
    with torch.device('meta'):
        ours = _shapes(ResNeXt(101, groups=64, base_width=4))
        theirs = _shapes(torchvision.models.resnext101_64x4d(weights=None))
    assert ours == theirs
    assert sum(np.prod(s) for s in ours.values()
               if len(s) > 0) > 81_000_000


def test_resnext_dcn_runs():
    model = ResNeXt(
        50,
        groups=4,
        base_width=16,
        dcn=dict(type='DCNv2', deform_groups=1),
        stage_with_dcn=(False, False, True, True),
        **SMALL)
    conv = model.layer3[0].conv2
    assert isinstance(conv, ModulatedDeformConv2d) and conv.groups == 4
    outs = model(torch.randn(1, 3, 32, 32))
    assert outs[3].shape == (1, 256, 1, 1)
    with pytest.raises(KeyError):
        ResNeXt(18)
    with pytest.raises(ValueError):  # 8 planes * 4 / 64 < 1 channel
        ResNeXt(50, groups=4, base_width=4, **SMALL)
