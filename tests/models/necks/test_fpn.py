import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import tood.models  # noqa: F401  (registers everything)
from tood.models.necks import FPN
from tood.registry import MODELS

IN_CHANNELS = [8, 16, 32, 64]


def make_inputs(sizes=(32, 16, 8, 4), channels=IN_CHANNELS, square=False):
    """Maps of shape (1, c, s, s + 1), or (1, c, s, s) when square."""
    torch.manual_seed(0)
    return [
        torch.randn(1, c, s, s if square else s + 1)
        for c, s in zip(channels, sizes)
    ]


def conv(module, x):
    """Apply a ConvModule's conv (no norm/act configured) functionally."""
    c = module.conv
    return F.conv2d(x, c.weight, c.bias, c.stride, c.padding)


def test_tood_config_shapes_names_and_params():
    neck = MODELS.build(
        dict(
            type='FPN',
            in_channels=[256, 512, 1024, 2048],
            out_channels=256,
            start_level=1,
            add_extra_convs='on_output',
            num_outs=5))
    assert isinstance(neck, FPN)
    assert sum(p.numel() for p in neck.parameters()) == 3_868_672
    names = {k: tuple(v.shape) for k, v in neck.state_dict().items()}
    assert names['lateral_convs.0.conv.weight'] == (256, 512, 1, 1)
    assert names['lateral_convs.2.conv.weight'] == (256, 2048, 1, 1)
    assert names['fpn_convs.3.conv.weight'] == (256, 256, 3, 3)
    assert names['fpn_convs.4.conv.bias'] == (256, )
    assert len(neck.lateral_convs) == 3 and len(neck.fpn_convs) == 5
    assert neck.fpn_convs[3].conv.stride == (2, 2)

    inputs = make_inputs((16, 8, 4, 2), [256, 512, 1024, 2048])
    outs = neck(inputs)
    assert [o.shape for o in outs] == [(1, 256, 8, 9), (1, 256, 4, 5),
                                       (1, 256, 2, 3), (1, 256, 1, 2),
                                       (1, 256, 1, 1)]
    # P6 from the P5 output, P7 from P6, no ReLU in between.
    assert torch.allclose(outs[3], conv(neck.fpn_convs[3], outs[2]),
                          atol=1e-5)
    assert torch.allclose(outs[4], conv(neck.fpn_convs[4], outs[3]),
                          atol=1e-5)
    assert (outs[3] < 0).any()  # no activation anywhere


def test_top_down_pathway_matches_manual():
    neck = FPN(IN_CHANNELS, 16, num_outs=4)
    # Odd sizes: upsampling has to go to the lateral's size, not x2.
    inputs = make_inputs((25, 13, 7, 4))
    outs = neck(inputs)
    lat = [conv(m, x) for m, x in zip(neck.lateral_convs, inputs)]
    for i in range(3, 0, -1):
        lat[i - 1] = lat[i - 1] + F.interpolate(
            lat[i], size=lat[i - 1].shape[2:], mode='nearest')
    expected = [conv(m, x) for m, x in zip(neck.fpn_convs, lat)]
    assert len(outs) == 4
    for out, exp, x in zip(outs, expected, inputs):
        assert out.shape == (1, 16, *x.shape[2:])
        assert torch.allclose(out, exp, atol=1e-5)


def test_maxpool_extra_levels():
    neck = FPN(IN_CHANNELS, 16, num_outs=5, start_level=1)
    assert len(neck.fpn_convs) == 3
    outs = neck(make_inputs())
    assert [o.shape[-2:] for o in outs] == [(16, 17), (8, 9), (4, 5), (2, 3),
                                            (1, 2)]
    assert torch.equal(outs[3], outs[2][..., ::2, ::2])
    assert torch.equal(outs[4], outs[3][..., ::2, ::2])


@pytest.mark.parametrize('mode', [True, 'on_input'])
def test_extra_convs_on_input(mode):
    neck = FPN(IN_CHANNELS, 16, num_outs=6, start_level=1,
               add_extra_convs=mode)
    assert neck.add_extra_convs == 'on_input'
    assert neck.fpn_convs[3].conv.in_channels == 64
    assert neck.fpn_convs[4].conv.in_channels == 16
    inputs = make_inputs()
    outs = neck(inputs)
    assert torch.allclose(outs[3], conv(neck.fpn_convs[3], inputs[3]),
                          atol=1e-5)
    assert torch.allclose(outs[4], conv(neck.fpn_convs[4], outs[3]),
                          atol=1e-5)


def test_extra_convs_on_lateral_with_relu():
    neck = FPN(IN_CHANNELS, 16, num_outs=6, start_level=1,
               add_extra_convs='on_lateral', relu_before_extra_convs=True)
    assert neck.fpn_convs[3].conv.in_channels == 16
    inputs = make_inputs()
    outs = neck(inputs)
    top_lateral = conv(neck.lateral_convs[-1], inputs[3])
    assert torch.allclose(outs[3], conv(neck.fpn_convs[3], top_lateral),
                          atol=1e-5)
    assert torch.allclose(
        outs[4], conv(neck.fpn_convs[4], F.relu(outs[3])), atol=1e-5)
    assert not torch.allclose(
        outs[4], conv(neck.fpn_convs[4], outs[3]), atol=1e-5)


def test_end_level_and_invalid_configs():
    neck = FPN(IN_CHANNELS, 16, num_outs=3, start_level=0, end_level=2)
    assert len(neck.lateral_convs) == 3
    outs = neck(make_inputs())
    assert [o.shape[-1] for o in outs] == [33, 17, 9]
    with pytest.raises(ValueError):
        FPN(IN_CHANNELS, 16, num_outs=4, end_level=2)
    with pytest.raises(ValueError):
        FPN(IN_CHANNELS, 16, num_outs=3, start_level=0)
    with pytest.raises(ValueError):
        FPN(IN_CHANNELS, 16, num_outs=5, add_extra_convs='on_nothing')
    with pytest.raises(ValueError):
        FPN(IN_CHANNELS, 16, num_outs=4)(make_inputs()[1:])


def test_norm_and_upsample_cfg():
    neck = FPN(IN_CHANNELS, 16, num_outs=5, norm_cfg=dict(type='BN'),
               act_cfg=dict(type='ReLU'), no_norm_on_lateral=True,
               upsample_cfg=dict(scale_factor=2, mode='nearest'))
    assert not hasattr(neck.lateral_convs[0], 'bn')
    assert neck.lateral_convs[0].conv.bias is not None
    assert isinstance(neck.fpn_convs[0].bn, nn.BatchNorm2d)
    assert neck.fpn_convs[0].conv.bias is None  # bias='auto' with a norm
    outs = neck.eval()(make_inputs(square=True))
    assert all((o >= 0).all() for o in outs)  # ReLU applied
    assert [o.shape[-2] for o in outs] == [32, 16, 8, 4, 2]


def test_xavier_init():
    neck = FPN([256, 512], 256, num_outs=2)
    with torch.no_grad():
        for p in neck.parameters():
            p.fill_(3.0)
    neck.init_weights()
    for m in neck.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            bound = (6 / (fan_in + fan_out))**0.5
            assert m.weight.abs().max() <= bound
            # Uniform on [-b, b] has std b / sqrt(3).
            assert m.weight.std().item() == pytest.approx(
                bound / 3**0.5, rel=0.05)
            assert torch.all(m.bias == 0)


def test_backbone_and_neck_together():
    backbone = MODELS.build(
        dict(type='ResNet', depth=50, stem_channels=8, base_channels=8))
    neck = MODELS.build(
        dict(
            type='FPN',
            in_channels=[32, 64, 128, 256],
            out_channels=16,
            start_level=1,
            add_extra_convs='on_output',
            num_outs=5))
    outs = neck(backbone(torch.randn(1, 3, 128, 96)))
    # Strides 8 ... 128.
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 12), (8, 6), (4, 3),
                                                   (2, 2), (1, 1)]
