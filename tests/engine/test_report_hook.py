"""TrainingReportHook after a real (tiny) training run on shapes data."""
import glob
import json
import os.path as osp
import types

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from tood.datasets.shapes import generate_shapes
from tood.engine import TrainingReportHook
from tood.utils import register_all_modules

# Trainings, exports or tools in their own processes: seconds to
# minutes each (pytest -m "not e2e" leaves them out).
pytestmark = pytest.mark.e2e

MODEL_CFG = osp.join(
    osp.dirname(__file__), '..', '..', 'configs', '_base_', 'models',
    'tood_r50_fpn.py')


def tiny_shapes_cfg(data_root: str, work_dir: str) -> Config:
    """A 2-epoch run (2 iterations each) of a ResNet-18 (16 channels) TOOD
    on the 4 train images of the shapes set at ``data_root`` (see
    ``trained_work_dir``), validated after each epoch on its 4 val images,
    with the report hook."""
    model = Config.fromfile(MODEL_CFG).model
    model.backbone.update(
        depth=18, stem_channels=16, base_channels=16, init_cfg=None)
    model.neck.update(
        in_channels=[16, 32, 64, 128], out_channels=32, num_outs=3)
    model.bbox_head.update(
        num_classes=8,
        in_channels=32,
        feat_channels=32,
        stacked_convs=2,
        strides=(8, 16, 32),
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True))
    model.train_cfg.initial_epoch = 1
    # Barely trained: keep every box so there is something to draw.
    model.test_cfg.update(score_thr=0.0, max_per_img=20)

    shapes = dict(type='CocoDataset', data_root=data_root)
    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs')
    ]
    val_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(
            type='PackDetInputs',
            meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                       'scale_factor'))
    ]
    ann_val = osp.join(data_root, 'annotations', 'instances_val.json')
    return Config(
        dict(
            default_scope='tood',
            work_dir=work_dir,
            model=model,
            train_dataloader=dict(
                batch_size=2,
                num_workers=0,
                sampler=dict(type='DefaultSampler', shuffle=True),
                dataset=dict(
                    shapes,
                    ann_file='annotations/instances_train.json',
                    data_prefix=dict(img='train/'),
                    filter_cfg=dict(filter_empty_gt=True),
                    pipeline=train_pipeline)),
            val_dataloader=dict(
                batch_size=4,
                num_workers=0,
                sampler=dict(type='DefaultSampler', shuffle=False),
                dataset=dict(
                    shapes,
                    ann_file='annotations/instances_val.json',
                    data_prefix=dict(img='val/'),
                    test_mode=True,
                    pipeline=val_pipeline)),
            val_evaluator=dict(type='CocoMetric', ann_file=ann_val),
            train_cfg=dict(
                type='EpochBasedTrainLoop', max_epochs=2, val_interval=1),
            val_cfg=dict(type='ValLoop'),
            optim_wrapper=dict(
                optimizer=dict(
                    type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)),
            default_hooks=dict(
                logger=dict(type='LoggerHook', interval=1),
                checkpoint=dict(type='CheckpointHook', interval=10)),
            custom_hooks=[
                dict(type='TrainingReportHook', num_images=2, score_thr=0.0)
            ],
            visualizer=dict(
                type='Visualizer',
                vis_backends=[dict(type='LocalVisBackend')]),
            log_level='INFO',
            randomness=dict(seed=0)))


@pytest.fixture(scope='module')
def trained_work_dir(tmp_path_factory) -> str:
    register_all_modules()
    root = tmp_path_factory.mktemp('report')
    generate_shapes(str(root / 'shapes'), num_train=4, num_val=4, img_size=64)
    cfg = tiny_shapes_cfg(str(root / 'shapes'), str(root / 'work'))
    runner = Runner.from_cfg(cfg)
    runner.train()
    return str(root / 'work')


def _run_log(work_dir: str) -> str:
    (path, ) = glob.glob(osp.join(work_dir, '*', '*.log'))
    with open(path) as f:
        return f.read()


def test_curves_png_is_drawn_from_the_scalar_log(trained_work_dir):
    log = _run_log(trained_work_dir)
    assert 'TrainingReportHook: curves written' in log
    assert 'TrainingReportHook: no' not in log
    # The source of the curves: 4 training lines, 2 validation lines.
    (scalars, ) = glob.glob(
        osp.join(trained_work_dir, '*', 'vis_data', 'scalars.json'))
    with open(scalars) as f:
        records = [json.loads(line) for line in f]
    assert sum('loss_cls' in r for r in records) == 4
    assert sum('coco/bbox_mAP' in r for r in records) == 2

    image = cv2.imread(osp.join(trained_work_dir, 'report', 'curves.png'))
    assert image is not None
    # Four panels (2x2) of 520x360 px at 100 dpi.
    assert image.shape == (720, 1040, 3)
    # Lines and text, not a blank canvas.
    assert (image < 128).mean() > 0.005
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20


def test_prediction_pngs_of_the_first_val_images(trained_work_dir):
    report = osp.join(trained_work_dir, 'report')
    drawn = sorted(osp.basename(p)
                   for p in glob.glob(osp.join(report, 'pred_*.png')))
    # The shapes jsons number their images from 1; num_images=2 of 4.
    assert drawn == ['pred_1.png', 'pred_2.png']
    shapes_val = osp.join(osp.dirname(trained_work_dir), 'shapes', 'val')
    for index in (1, 2):
        image = cv2.imread(osp.join(report, f'pred_{index}.png'))
        original = cv2.imread(
            osp.join(shapes_val, f'{index - 1:06d}.png'))
        assert image.shape == original.shape == (64, 64, 3)
        changed = np.abs(image.astype(int) - original).max(-1) > 30
        # Boxes and labels cover part of the image, not all of it.
        assert 0.02 < changed.mean() < 0.9


def test_nothing_is_written_unless_training_ran(tmp_path):
    runner = types.SimpleNamespace(
        _train_loop=dict(type='EpochBasedTrainLoop'),
        work_dir=str(tmp_path))
    TrainingReportHook().after_run(runner)
    assert not osp.exists(tmp_path / 'report')
