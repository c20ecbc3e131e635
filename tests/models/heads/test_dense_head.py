"""Bad values stop when the model is built, with their config key named."""
import copy

import pytest

from tood.errors import ConfigError
from tood.registry import MODELS
from tood.utils import register_all_modules

MODEL = dict(
    type='TOOD',
    data_preprocessor=dict(type='DetDataPreprocessor', pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=8,
                  norm_eval=False),
    neck=dict(type='FPN', in_channels=[8, 16, 32, 64], out_channels=16,
              start_level=1, add_extra_convs='on_output', num_outs=5),
    bbox_head=dict(type='TOODHead', num_classes=3, in_channels=16,
                   feat_channels=16, stacked_convs=2,
                   norm_cfg=dict(type='GN', num_groups=4)),
    train_cfg=dict(initial_epoch=1,
                   initial_assigner=dict(type='ATSSAssigner', topk=9),
                   assigner=dict(type='TaskAlignedAssigner', topk=13)),
    test_cfg=dict(score_thr=0.05))


def build(**changes):
    register_all_modules()
    cfg = copy.deepcopy(MODEL)
    for path, value in changes.items():
        *parents, leaf = path.split('__')
        node = cfg
        for key in parents:
            node = node[key]
        node[leaf] = value
    return MODELS.build(cfg)


def test_the_base_model_builds():
    build()


@pytest.mark.parametrize('path, value, key', [
    ('train_cfg__assigner__topk', 0, 'model.train_cfg.assigner'),
    ('train_cfg__initial_assigner__topk', 0,
     'model.train_cfg.initial_assigner'),
    ('bbox_head__num_classes', 0, 'model.bbox_head.num_classes'),
    ('bbox_head__stacked_convs', 0, 'model.bbox_head.stacked_convs'),
    ('bbox_head__feat_channels', 4, 'model.bbox_head.feat_channels'),
    ('bbox_head__num_dcn', 3, 'model.bbox_head.num_dcn'),
    ('bbox_head__anchor_type', 'anchorfree', 'model.bbox_head.anchor_type'),
    ('bbox_head__norm_cfg', dict(type='GN', num_groups=5),
     'model.bbox_head.norm_cfg.num_groups'),
    ('bbox_head__strides', (8, 16, 32, 64), 'model.bbox_head.strides'),
])
def test_bad_value_names_its_key(path, value, key):
    with pytest.raises(ConfigError, match=key.replace('.', r'\.')):
        build(**{path: value})


def test_the_head_needs_one_feature_map_per_stride():
    import torch
    model = build()
    feats = [torch.zeros(1, 16, 4, 4)] * 4
    with pytest.raises(ValueError, match='4 feature maps for 5 strides'):
        model.bbox_head(feats)
