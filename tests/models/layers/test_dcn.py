import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.registry import DefaultScope
from torchvision.ops import deform_conv2d

from tood.models.layers import ModulatedDeformConv2d, build_conv
from tood.registry import MODELS


def bilinear(img: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """img (C, H, W) read at real (y, x); pixels outside the map are 0."""
    _, h, w = img.shape
    y0, x0 = math.floor(y), math.floor(x)
    out = torch.zeros(img.shape[0], dtype=img.dtype)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * img[:, yy, xx]
    return out


def reference_dcn(x, weight, bias, offset, mask, stride, padding, dilation,
                  deform_groups):
    """Direct DCNv2 with per-tap offsets and masks shared by all locations.

    offset: (deform_groups, K, 2) as (dy, dx); mask: (deform_groups, K).
    """
    n, c, h, w = x.shape
    out_c, _, kh, kw = weight.shape
    h_out = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    w_out = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    c_per_group = c // deform_groups
    out = torch.zeros(n, out_c, h_out, w_out, dtype=torch.float64)
    for b in range(n):
        for i in range(h_out):
            for j in range(w_out):
                acc = torch.zeros(out_c, dtype=torch.float64)
                for g in range(deform_groups):
                    chans = slice(g * c_per_group, (g + 1) * c_per_group)
                    for a in range(kh):
                        for bb in range(kw):
                            k = a * kw + bb
                            dy, dx = offset[g, k]
                            y = i * stride - padding + a * dilation + dy
                            xx = j * stride - padding + bb * dilation + dx
                            v = bilinear(x[b, chans].double(), float(y),
                                         float(xx))
                            acc += mask[g, k] * (
                                weight[:, chans, a, bb].double() @ v)
                out[b, :, i, j] = acc + bias.double()
    return out


def test_zero_offset_is_half_plain_conv():
    torch.manual_seed(0)
    dcn = ModulatedDeformConv2d(4, 6, 3, stride=2, padding=1, bias=True)
    x = torch.randn(2, 4, 9, 7)
    expected = F.conv2d(x, dcn.weight, None, stride=2, padding=1)
    out = dcn(x)
    # sigmoid(0) = 0.5 modulates every tap, the bias is added afterwards.
    assert torch.allclose(
        out, 0.5 * expected + dcn.bias.view(1, -1, 1, 1), atol=1e-5)
    assert out.shape == (2, 6, 5, 4)


@pytest.mark.parametrize('stride,padding,dilation,deform_groups',
                         [(1, 1, 1, 1), (2, 2, 2, 2)])
def test_nonzero_offset_matches_bilinear_sampling(stride, padding, dilation,
                                                  deform_groups):
    torch.manual_seed(1)
    dcn = ModulatedDeformConv2d(
        4, 3, 3, stride=stride, padding=padding, dilation=dilation,
        deform_groups=deform_groups)
    num_taps = 9
    # Constant (input-independent) offsets and masks through the bias of the
    # offset conv: channels [0, 2*G*K) are offsets, the rest mask logits.
    offset = torch.empty(deform_groups, num_taps, 2).uniform_(-1.7, 1.7)
    mask_logits = torch.randn(deform_groups, num_taps)
    with torch.no_grad():
        dcn.conv_offset.weight.zero_()
        dcn.conv_offset.bias.copy_(
            torch.cat([offset.flatten(), mask_logits.flatten()]))
    x = torch.randn(1, 4, 6, 5)
    out = dcn(x)
    expected = reference_dcn(x, dcn.weight.detach(), dcn.bias.detach(),
                             offset, torch.sigmoid(mask_logits), stride,
                             padding, dilation, deform_groups)
    assert out.shape == expected.shape
    assert torch.allclose(out.double(), expected, atol=1e-5)
    # The offsets really moved the taps away from the plain conv.
    plain = F.conv2d(x, dcn.weight, dcn.bias, stride, padding, dilation)
    assert not torch.allclose(out, plain, atol=1e-2)


def test_gradients_reach_offset_branch():
    torch.manual_seed(2)
    dcn = ModulatedDeformConv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        dcn.conv_offset.weight.normal_(0, 0.1)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    dcn(x).pow(2).sum().backward()
    grad = dcn.conv_offset.weight.grad
    assert grad is not None
    # Both the offset (first 18 channels) and the mask part get gradients.
    assert grad[:18].abs().sum() > 0 and grad[18:].abs().sum() > 0
    assert dcn.conv_offset.bias.grad.abs().sum() > 0
    assert dcn.weight.grad.abs().sum() > 0 and x.grad.abs().sum() > 0


def test_autocast_and_half_inputs():
    torch.manual_seed(3)
    dcn = ModulatedDeformConv2d(4, 4, 3, padding=1)
    with torch.no_grad():
        dcn.conv_offset.weight.normal_(0, 0.05)
    x = torch.randn(1, 4, 8, 8)
    ref = dcn(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = dcn(x)
        out_bf16 = dcn(x.bfloat16())
    assert out.dtype == torch.float32
    assert out_bf16.dtype == torch.bfloat16
    # Only the offset conv ran in bf16; the sampling itself stayed float32.
    assert torch.allclose(out, ref, atol=0.1)
    assert torch.allclose(out_bf16.float(), ref, atol=0.1)


DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('low', [torch.bfloat16, torch.float16],
                         ids=['bfloat16', 'float16'])
def test_under_autocast_the_sampling_gets_float32(monkeypatch, device, low):
    """The sampling op itself gets float32 tensors holding exactly the
    layer's input, weights and bias and the offsets and masks of the
    offset conv, and its float32 output comes back unrounded (closeness
    of outputs alone lets a rounding of the input through)."""
    import tood.models.layers.dcn as dcn_module
    received = []

    def recording(*args, **kwargs):
        received.append((args, kwargs))
        return deform_conv2d(*args, **kwargs)

    monkeypatch.setattr(dcn_module, 'deform_conv2d', recording)
    torch.manual_seed(5)
    dcn = ModulatedDeformConv2d(4, 4, 3, padding=1).to(device)
    with torch.no_grad():
        dcn.conv_offset.weight.normal_(0, 0.05)
    x = torch.randn(1, 4, 8, 8, device=device)
    # Values that the low precision cannot hold.
    assert not torch.equal(x, x.to(low).float())
    with torch.autocast(device, dtype=low):
        out = dcn(x)
        offset_out = dcn.conv_offset(x)
    (inputs, offset, weight, bias), kwargs = received[0]
    tensors = [inputs, offset, weight, bias, kwargs['mask']]
    assert [t.dtype for t in tensors] == [torch.float32] * 5
    assert torch.equal(inputs, x)
    assert torch.equal(weight, dcn.weight) and torch.equal(bias, dcn.bias)
    # The offset conv alone ran in the low precision, as autocast asks;
    # its outputs reach the op as they are.
    assert offset_out.dtype == low
    o1, o2, logits = offset_out.chunk(3, dim=1)
    assert torch.equal(offset, torch.cat((o1, o2), dim=1).float())
    assert torch.equal(kwargs['mask'], torch.sigmoid(logits).float())
    assert out.dtype == torch.float32
    assert torch.equal(out, deform_conv2d(*received[0][0], **kwargs))


def test_parameter_names_match_mmcv_pack():
    dcn = ModulatedDeformConv2d(8, 16, 3, padding=1, deform_groups=2,
                                bias=False)
    shapes = {k: tuple(v.shape) for k, v in dcn.state_dict().items()}
    assert shapes == {
        'weight': (16, 8, 3, 3),
        'conv_offset.weight': (2 * 3 * 9, 8, 3, 3),
        'conv_offset.bias': (2 * 3 * 9, ),
    }
    assert dcn.conv_offset.weight.abs().sum() == 0
    assert dcn.conv_offset.bias.abs().sum() == 0


def test_grouped_dcn_matches_grouped_conv():
    torch.manual_seed(4)
    dcn = ModulatedDeformConv2d(8, 8, 3, padding=1, groups=4, bias=False)
    assert dcn.weight.shape == (8, 2, 3, 3)
    x = torch.randn(1, 8, 5, 5)
    expected = F.conv2d(x, dcn.weight, padding=1, groups=4)
    assert torch.allclose(dcn(x), 0.5 * expected, atol=1e-5)


def test_build_conv():
    conv = build_conv(None, 4, 8, 3, stride=2, padding=1, bias=False)
    assert type(conv) is nn.Conv2d
    assert conv.stride == (2, 2) and conv.bias is None

    dcn = build_conv(dict(type='DCNv2', deform_groups=2), 4, 8, 3,
                     padding=2, dilation=2, groups=2, bias=False)
    assert isinstance(dcn, ModulatedDeformConv2d)
    assert dcn.deform_groups == 2 and dcn.groups == 2
    assert dcn.dilation == (2, 2) and dcn.bias is None
    assert dcn.conv_offset.out_channels == 2 * 27
    assert dcn(torch.randn(1, 4, 6, 6)).shape == (1, 8, 6, 6)

    with pytest.raises(ValueError):
        build_conv(dict(type='DCNv1'), 4, 8, 3)


def test_registry_and_conv_module():
    dcn = MODELS.build(
        dict(type='DCNv2', in_channels=4, out_channels=4, kernel_size=1))
    assert isinstance(dcn, ModulatedDeformConv2d)
    # mmcv's ConvModule finds DCNv2 in the tood scope (used by the head).
    with DefaultScope.overwrite_default_scope('tood'):
        m = ConvModule(
            8, 8, 3, padding=1, conv_cfg=dict(type='DCNv2'),
            norm_cfg=dict(type='GN', num_groups=4))
    assert isinstance(m.conv, ModulatedDeformConv2d)
    assert m.conv.conv_offset.weight.abs().sum() == 0
    assert m(torch.randn(1, 8, 5, 5)).shape == (1, 8, 5, 5)
