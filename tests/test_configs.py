"""Every config loads and its model builds through the registry."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from tood.registry import MODELS
from tood.utils import register_all_modules

CONFIG_ROOT = osp.join(osp.dirname(__file__), '..', 'configs')
CONFIGS = sorted(
    osp.relpath(path, CONFIG_ROOT)
    for path in glob.glob(osp.join(CONFIG_ROOT, '**', '*.py'), recursive=True)
    if '_base_' not in path)


def test_all_published_configs_are_present():
    expected = {
        f'tood/tood_{name}_coco.py'
        for name in ('r50_fpn_1x', 'r50_fpn_anchor-based_1x', 'r50_fpn_ms-2x',
                     'r101_fpn_ms-2x', 'x101-64x4d_fpn_ms-2x',
                     'r101-dconv-c3-c5_fpn_ms-2x',
                     'x101-64x4d-dconv-c4-c5_fpn_ms-2x')
    }
    assert expected <= set(CONFIGS)


@pytest.mark.e2e
@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_its_model(name):
    register_all_modules()
    cfg = Config.fromfile(osp.join(CONFIG_ROOT, name))
    assert cfg.default_scope == 'tood'
    # Nothing may be downloaded in tests.
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == cfg.model.type
    assert type(model.backbone).__name__ == cfg.model.backbone.type
    assert model.bbox_head.num_classes == cfg.model.bbox_head.num_classes
    assert sum(p.numel() for p in model.parameters()) > 0


def _cfg(name):
    return Config.fromfile(osp.join(CONFIG_ROOT, 'tood', name))


def test_r50_1x_matches_the_paper_setup():
    cfg = _cfg('tood_r50_fpn_1x_coco.py')
    assert cfg.optim_wrapper.optimizer == dict(
        type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)
    assert cfg.train_cfg.max_epochs == 12
    assert cfg.param_scheduler[0].end == 500
    assert cfg.param_scheduler[1].milestones == [8, 11]
    assert cfg.model.bbox_head.anchor_type == 'anchor_free'
    assert cfg.model.train_cfg.initial_epoch == 4
    assert cfg.model.train_cfg.assigner == dict(
        type='TaskAlignedAssigner', topk=13, inside_first=False,
        conflict='max_iou')
    assert cfg.model.train_cfg.hard_labels is False
    assert cfg.model.test_cfg.nms.iou_threshold == 0.6
    # The warm-up switch needs no hook (the head reads the epoch itself).
    assert not cfg.get('custom_hooks')
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert [t.type for t in cfg.train_dataloader.dataset.pipeline] == [
        'LoadImageFromFile', 'LoadAnnotations', 'Resize', 'RandomFlip',
        'PackDetInputs'
    ]
    assert 'scale_factor' in cfg.test_dataloader.dataset.pipeline[-1][
        'meta_keys']


def test_variants_change_only_what_they_name():
    anchor_based = _cfg('tood_r50_fpn_anchor-based_1x_coco.py')
    assert anchor_based.model.bbox_head.anchor_type == 'anchor_based'

    ms2x = _cfg('tood_r50_fpn_ms-2x_coco.py')
    assert ms2x.train_cfg.max_epochs == 24
    assert ms2x.param_scheduler[1].milestones == [16, 22]
    assert ms2x.optim_wrapper.optimizer.lr == 0.01
    assert ms2x.train_dataloader.dataset.pipeline[2] == dict(
        type='RandomResize', scale=[(1333, 480), (1333, 800)], keep_ratio=True)
    assert ms2x.test_dataloader.dataset.pipeline[1].scale == (1333, 800)

    r101_dcn = _cfg('tood_r101-dconv-c3-c5_fpn_ms-2x_coco.py')
    assert r101_dcn.model.backbone.depth == 101
    assert r101_dcn.model.backbone.init_cfg.checkpoint == \
        'torchvision://resnet101'
    assert r101_dcn.model.backbone.stage_with_dcn == (False, True, True, True)
    assert r101_dcn.model.backbone.dcn.type == 'DCNv2'
    assert r101_dcn.model.bbox_head.num_dcn == 2

    x101_dcn = _cfg('tood_x101-64x4d-dconv-c4-c5_fpn_ms-2x_coco.py')
    assert x101_dcn.model.backbone.type == 'ResNeXt'
    assert (x101_dcn.model.backbone.groups,
            x101_dcn.model.backbone.base_width) == (64, 4)
    assert x101_dcn.model.backbone.stage_with_dcn == (False, False, True,
                                                      True)
    assert x101_dcn.model.bbox_head.num_dcn == 2
    assert x101_dcn.train_cfg.max_epochs == 24


def test_dcn_config_really_uses_deformable_convs():
    register_all_modules()
    cfg = _cfg('tood_r101-dconv-c3-c5_fpn_ms-2x_coco.py')
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    deformable = [
        name for name, module in model.named_modules()
        if 'DCN' in type(module).__name__ or 'Deform' in type(module).__name__
    ]
    assert any(name.startswith('backbone.layer2') for name in deformable)
    assert not any(name.startswith('backbone.layer1') for name in deformable)
    assert any(name.startswith('bbox_head') for name in deformable)


def test_bccd_mosaic_recipe_changes_only_the_training_pipeline():
    base = _cfg('tood_r18_fpn_ms-20e_bccd.py')
    mosaic = _cfg('tood_r18_fpn_mosaic-ms-20e_bccd.py')
    for key in ('model', 'optim_wrapper', 'param_scheduler', 'train_cfg',
                'val_dataloader', 'val_evaluator', 'default_hooks'):
        assert mosaic[key] == base[key], key
    train = mosaic.train_dataloader
    assert {k: v for k, v in train.items() if k != 'dataset'} == {
        k: v for k, v in base.train_dataloader.items() if k != 'dataset'}
    assert [t.type for t in train.dataset.pipeline] == [
        'LoadImageFromFile', 'LoadAnnotations', 'CachedMosaic',
        'RandomAffine', 'RandomResize', 'RandomFlip', 'PackDetInputs'
    ]
    # The affine's negative border cuts the (960, 1280) mosaic back to the
    # photographs' (480, 640).
    affine = train.dataset.pipeline[3]
    assert affine.border == (-240, -320)
    # The mosaic off for the last 5 of 20 epochs; the pipeline then is the
    # base's.
    switch = [h for h in mosaic.custom_hooks
              if h.type == 'PipelineSwitchHook']
    assert len(switch) == 1
    assert switch[0].switch_epoch == mosaic.train_cfg.max_epochs - 5 == 15
    assert switch[0].switch_pipeline == base.train_dataloader.dataset.pipeline
    assert 'TrainingReportHook' in [h.type for h in mosaic.custom_hooks]
