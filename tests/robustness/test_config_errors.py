"""Config mistakes end with a message naming the key, not a traceback."""
import os.path as osp
import sys
from types import SimpleNamespace

import pytest
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import DefaultScope
from robust_helpers import CONFIG, DRIVER, finish, make_shapes, start

from tood.datasets import CocoDataset
from tood.engine.errors import (ConfigError, check_required_keys,
                                explain_error)
from tood.engine.hooks import NumClassCheckHook
from tood.registry import MODELS, TRANSFORMS
from tood.utils import register_all_modules

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'tools'))
import train  # noqa: E402


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes(str(tmp_path_factory.mktemp('shapes')))


def test_unknown_type_through_train_py(shapes, tmp_path):
    rc, out = finish(
        start([
            sys.executable, DRIVER, CONFIG, '--work-dir',
            str(tmp_path), '--cfg-options', 'model.backbone.type=ResNt'
        ], shapes))
    assert rc == 1, out[-3000:]
    assert 'Traceback' not in out
    assert "Unknown type 'ResNt' (at model.backbone)" in out
    closest = out.split('Closest registered names: ')[1].split('.')[0]
    assert closest.split(', ')[0] == 'ResNet'
    assert 'ResNeXt' in closest


def built_error(registry, cfg):
    register_all_modules()
    with DefaultScope.overwrite_default_scope('tood'):
        with pytest.raises(Exception) as info:
            registry.build(cfg)
    return info.value


def test_unknown_type_lists_the_closest_names_of_its_registry():
    error = built_error(TRANSFORMS, dict(type='LoadImageFromFlie'))
    message = explain_error(error)
    assert "Unknown type 'LoadImageFromFlie'" in message
    assert 'as a transform in the tood scope' in message
    assert message.split('Closest registered names: ')[1].startswith(
        'LoadImageFromFile')


def test_missing_and_unexpected_keys_of_a_module():
    cfg = Config.fromfile(CONFIG)
    del cfg.model.bbox_head['num_classes']
    message = explain_error(built_error(MODELS, cfg.model), cfg)
    assert message == ('The config of TOODHead (at model.bbox_head) lacks '
                       "the required key(s) 'num_classes'.")
    cfg = Config.fromfile(CONFIG)
    cfg.model.neck.out_channel = 16
    message = explain_error(built_error(MODELS, cfg.model), cfg)
    assert "FPN (at model.neck) has the key 'out_channel'" in message


def test_missing_top_level_keys_through_train_py(tmp_path):
    config = tmp_path / 'partial.py'
    config.write_text("default_scope = 'tood'\nmodel = dict(type='TOOD')\n"
                      "val_cfg = dict(type='ValLoop')\n")
    with pytest.raises(SystemExit) as info:
        train.main([str(config), '--work-dir', str(tmp_path / 'work')])
    message = str(info.value.code)
    assert message.startswith(f'The config {config} lacks required key(s)')
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper',
                'val_dataloader', 'val_evaluator'):
        assert key in message
    with pytest.raises(ConfigError, match='test_evaluator'):
        check_required_keys(Config.fromfile(str(config)), 'test')


class TinyDetector(nn.Module):

    def __init__(self, num_classes):
        super().__init__()
        self.bbox_head = nn.Module()
        self.bbox_head.num_classes = num_classes


def test_num_classes_must_match_the_dataset(shapes):
    dataset = CocoDataset(
        ann_file=osp.join(shapes, 'annotations', 'instances_train.json'),
        data_prefix=dict(img=''))
    loader = SimpleNamespace(dataset=dataset)
    hook = NumClassCheckHook()
    hook.before_train(
        SimpleNamespace(model=TinyDetector(8), train_dataloader=loader))
    with pytest.raises(ConfigError) as info:
        hook.before_val(
            SimpleNamespace(model=TinyDetector(80), val_dataloader=loader))
    message = str(info.value)
    assert message.startswith('model.bbox_head.num_classes is 80 but the '
                              'val dataset')
    assert 'instances_train.json) has 8 classes' in message
    assert 'Set model.bbox_head.num_classes=8' in message
    assert explain_error(info.value) == message
