"""tools/model_converters: official / MMDetection TOOD and ImageNet weights.

Source checkpoints are built here from a small model of ours, renamed into
the source layout with names written out from the published code (not
from the converter's tables), and converted back; the converted model must
produce exactly the original outputs.
"""
import importlib.util
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from tool_helpers import REPO
from torchvision.models.resnet import Bottleneck as TVBottleneck
from torchvision.models.resnet import ResNet as TVResNet

from tood.engine import load_from_local
from tood.model_converters import (ArchitectureError, ConversionError,
                                   convert_tood_state_dict, detect_source,
                                   infer_resnet_arch, split_checkpoint)
from tood.models.backbones import ResNeXt
from tood.registry import MODELS
from tood.utils import register_all_modules

# fcjian/TOOD mmdet/models/dense_heads/tood_head.py: TaskDecomposition has
# la_conv1/la_conv2 (ours: layer_attention.0/.2), TOODHead has
# cls_prob_conv1/2 and reg_offset_conv1/2 (ours: *_module.0/.2).
OURS_TO_OFFICIAL = {
    '.layer_attention.0.': '.la_conv1.',
    '.layer_attention.2.': '.la_conv2.',
    '.cls_prob_module.0.': '.cls_prob_conv1.',
    '.cls_prob_module.2.': '.cls_prob_conv2.',
    '.reg_offset_module.0.': '.reg_offset_conv1.',
    '.reg_offset_module.2.': '.reg_offset_conv2.',
}

# ResNeXt with DCNv2 in c4-c5 and two DCNv2 head convs: every kind of key a
# published TOOD checkpoint has, at a few thousand parameters.
TINY_TOOD = f"""
_base_ = '{REPO}/configs/tood/tood_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True, type='ResNeXt', depth=50, groups=2, base_width=16,
        stem_channels=8, base_channels=8, frozen_stages=1, norm_eval=True,
        dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, False, True, True), init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=16),
    bbox_head=dict(
        num_classes=3, in_channels=16, feat_channels=16, stacked_convs=2,
        num_dcn=2, norm_cfg=dict(type='GN', num_groups=4,
                                 requires_grad=True)))
"""


def load_tool(name: str):
    path = osp.join(REPO, 'tools', 'model_converters', name)
    spec = importlib.util.spec_from_file_location(name[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def to_official(state_dict: dict) -> dict:
    out = {}
    for key, value in state_dict.items():
        for ours, official in OURS_TO_OFFICIAL.items():
            key = key.replace(ours, official)
        out[key] = value
    return out


def randomize_(model: torch.nn.Module, seed: int = 0) -> None:
    """Every parameter and statistic random, so that a tensor landing in the
    wrong place changes the outputs (zero-initialised DCN offsets included).
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=gen)
            if name.endswith('running_var'):
                tensor.copy_(noise.abs() + 0.5)
            elif 'conv_offset' in name:
                tensor.copy_(noise * 0.05)
            else:
                tensor.copy_(noise * 0.1)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """(config path, model with random weights, input batch, outputs)."""
    register_all_modules()
    cfg_path = str(tmp_path_factory.mktemp('cfg') / 'tiny_tood.py')
    with open(cfg_path, 'w') as f:
        f.write(TINY_TOOD)
    model = MODELS.build(Config.fromfile(cfg_path).model)
    randomize_(model)
    model.eval()
    inputs = torch.randn(1, 3, 64, 96, generator=torch.Generator()
                         .manual_seed(1))
    with torch.no_grad():
        outputs = model(inputs, mode='tensor')
    return cfg_path, model, inputs, outputs


def outputs_of(cfg_path, state_dict, inputs):
    model = MODELS.build(Config.fromfile(cfg_path).model)
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    with torch.no_grad():
        return model(inputs, mode='tensor')


def assert_same_outputs(a, b):
    for level_a, level_b in zip(a[0] + a[1], b[0] + b[1]):
        assert torch.equal(level_a, level_b)


def test_official_names_map_to_ours():
    t = torch.zeros(1)
    source = {
        'bbox_head.cls_decomp.la_conv1.weight': t,
        'bbox_head.reg_decomp.la_conv2.bias': t,
        'bbox_head.cls_prob_conv1.weight': t,
        'bbox_head.cls_prob_conv2.bias': t,
        'bbox_head.reg_offset_conv1.bias': t,
        'bbox_head.reg_offset_conv2.weight': t,
        'bbox_head.cls_decomp.reduction_conv.conv.weight': t,
        'bbox_head.inter_convs.0.conv.conv_offset.weight': t,
        'backbone.layer3.0.conv2.conv_offset.bias': t,
        'backbone.layer1.0.bn1.num_batches_tracked': t,
    }
    assert list(convert_tood_state_dict(source, 'official')) == [
        'bbox_head.cls_decomp.layer_attention.0.weight',
        'bbox_head.reg_decomp.layer_attention.2.bias',
        'bbox_head.cls_prob_module.0.weight',
        'bbox_head.cls_prob_module.2.bias',
        'bbox_head.reg_offset_module.0.bias',
        'bbox_head.reg_offset_module.2.weight',
        'bbox_head.cls_decomp.reduction_conv.conv.weight',
        'bbox_head.inter_convs.0.conv.conv_offset.weight',
        'backbone.layer3.0.conv2.conv_offset.bias',
        'backbone.layer1.0.bn1.num_batches_tracked',
    ]


def test_official_checkpoint_converts_to_the_same_model(tiny, tmp_path):
    cfg_path, model, inputs, outputs = tiny
    ours = model.state_dict()
    source = to_official(ours)
    assert 'bbox_head.cls_decomp.la_conv1.weight' in source
    assert sum(k not in ours for k in source) == 16  # renamed head keys
    src = str(tmp_path / 'tood_official.pth')
    # What mmcv 1.x's runner writes: mmdet's meta with the config text.
    torch.save(
        dict(
            meta=dict(
                mmdet_version='2.14.0', mmcv_version='1.3.8', epoch=12,
                CLASSES=('a', 'b', 'c'),
                config="model = dict(bbox_head=dict(type='TOODHead', "
                "anchor_type='anchor_free'))"),
            state_dict=source,
            optimizer=dict(state={}, param_groups=[])), src)

    dst = str(tmp_path / 'converted.pth')
    load_tool('tood_mmdet_to_tood.py').main(
        [src, dst, '--config', cfg_path])

    converted = load_from_local(dst)  # weights_only allow-list
    assert set(converted) == {'state_dict', 'meta'}
    assert list(converted['state_dict']) == list(ours)  # every key mapped
    assert converted['meta']['dataset_meta'] == dict(classes=['a', 'b', 'c'])
    assert converted['meta']['converted_from']['format'] == 'official'
    assert_same_outputs(outputs_of(cfg_path, converted['state_dict'],
                                   inputs), outputs)


@pytest.mark.parametrize('meta,extra,fmt', [
    (dict(mmdet_version='2.25.1', CLASSES=('a', 'b', 'c')), {}, 'mmdet2'),
    (dict(mmengine_version='0.10.7',
          dataset_meta=dict(classes=('a', 'b', 'c'))),
     dict(message_hub={}), 'mmdet3'),
    (None, {}, 'mmdet'),
])
def test_mmdet_checkpoints_are_detected_and_kept(tiny, meta, extra, fmt):
    _, model, _, _ = tiny
    source = {'module.' + k: v for k, v in model.state_dict().items()}
    checkpoint = source if meta is None else dict(
        meta=meta, state_dict=source, **extra)
    state_dict, meta_read = split_checkpoint(checkpoint)
    info = detect_source(state_dict, meta_read, checkpoint)
    assert info.format == fmt
    assert info.classes == (None if meta is None else ['a', 'b', 'c'])
    converted = convert_tood_state_dict(state_dict, info.format)
    # MMDetection's names are ours: the same tensors under the same keys.
    assert list(converted) == list(model.state_dict())
    assert all(converted[k] is source['module.' + k] for k in converted)


def test_unknown_keys_and_wrong_configs_are_refused(tiny, tmp_path):
    cfg_path, model, _, _ = tiny
    source = to_official(model.state_dict())
    # An ATSS head's extra branch: not TOOD, so not silently dropped.
    source['bbox_head.atss_centerness.weight'] = torch.zeros(1, 16, 3, 3)
    with pytest.raises(ConversionError, match='atss_centerness'):
        convert_tood_state_dict(source, 'official')
    with pytest.raises(ConversionError, match='no TOOD head'):
        detect_source({'backbone.conv1.weight': torch.zeros(1)}, {})

    tool = load_tool('tood_mmdet_to_tood.py')
    src = str(tmp_path / 'anchor_based.pth')
    torch.save(
        dict(
            meta=dict(config="bbox_head=dict(anchor_type='anchor_based')"),
            state_dict=to_official(model.state_dict())), src)
    dst = str(tmp_path / 'out.pth')
    with pytest.raises(SystemExit, match="anchor_type='anchor_based'"):
        tool.main([src, dst, '--config', cfg_path])
    with pytest.raises(SystemExit, match='size mismatch'):
        tool.main([src, dst, '--config', cfg_path, '--cfg-options',
                   'model.bbox_head.num_classes=5'])
    assert not osp.exists(dst)
    # The matching config converts it.
    tool.main([src, dst, '--config', cfg_path, '--cfg-options',
               'model.bbox_head.anchor_type=anchor_based'])
    assert osp.exists(dst)


def test_torchvision_resnext_becomes_a_pretrained_backbone(tmp_path, capsys):
    # torchvision's own ResNeXt-50 code, narrow (2 groups of 4 channels per
    # 64 planes) to keep the file small.
    torch.manual_seed(0)
    reference = TVResNet(TVBottleneck, [3, 4, 6, 3], groups=2,
                         width_per_group=4)
    randomize_(reference)
    src = str(tmp_path / 'resnext50_2x4d.pth')
    torch.save(reference.state_dict(), src)
    dst = str(tmp_path / 'backbone.pth')
    load_tool('torchvision_to_tood.py').main([src, dst])
    printed = capsys.readouterr().out
    assert "type='ResNeXt', depth=50, groups=2, base_width=4" in printed
    assert re.search(r'dropped fc\.weight, fc\.bias', printed)

    backbone = ResNeXt(
        depth=50, groups=2, base_width=4,
        init_cfg=dict(type='Pretrained', checkpoint=dst))
    backbone.init_weights()
    backbone.eval()
    reference.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = backbone(x)[-1]
        r = reference
        theirs = r.layer4(r.layer3(r.layer2(r.layer1(
            r.maxpool(r.relu(r.bn1(r.conv1(x))))))))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_wide_resnet_is_refused():
    # Wide ResNet-50-2's bottleneck: 128 channels for 64 planes, no groups.
    state_dict = {'conv1.weight': torch.zeros(64, 3, 7, 7)}
    for stage, blocks in enumerate((3, 4, 6, 3), 1):
        for block in range(blocks):
            state_dict[f'layer{stage}.{block}.conv1.weight'] = torch.zeros(1)
    state_dict['layer1.0.conv2.weight'] = torch.zeros(128, 128, 3, 3)
    state_dict['layer1.0.conv3.weight'] = torch.zeros(256, 128, 1, 1)
    with pytest.raises(ArchitectureError, match='Wide ResNet'):
        infer_resnet_arch(state_dict)
    state_dict['layer1.0.conv2.weight'] = torch.zeros(64, 64, 3, 3)
    assert infer_resnet_arch(state_dict) == dict(type='ResNet', depth=50)
