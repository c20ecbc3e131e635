"""tools/infer.py and tools/print_config.py end to end on a tiny shapes set.

``tiny_shapes_run`` (also used by test_analysis_tools.py) trains a tiny
TOOD for one epoch with tools/train.py once per test session.
"""
import json
import os
import os.path as osp
import runpy

import cv2
import numpy as np
import pytest
from tool_helpers import REPO, assert_ok, python_tool

from tood.datasets.shapes import SHAPES_CLASSES

# Trainings, exports or tools in their own processes: seconds to
# minutes each (pytest -m "not e2e" leaves them out).
pytestmark = pytest.mark.e2e

TINY_SHAPES_CONFIG = '''
_base_ = [
    '{repo}/configs/_base_/models/tood_r50_fpn.py',
    '{repo}/configs/_base_/default_runtime.py'
]
data_root = '{data_root}/'
# ResNet-18 with 16 channels, 3 FPN levels of 32 channels, 2 head convs;
# a barely trained model keeps every box so that there is something to see.
model = dict(
    backbone=dict(
        depth=18, stem_channels=16, base_channels=16, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32, num_outs=3),
    bbox_head=dict(
        num_classes=8,
        in_channels=32,
        feat_channels=32,
        stacked_convs=2,
        strides=(8, 16, 32),
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True)),
    test_cfg=dict(score_thr=0.0, max_per_img=20))
# Drawn by tools/train.py before it reads the data, as the shapes configs
# do; read as any COCO dataset.
data_preparer = dict(
    type='ShapesPreparer',
    data_root=data_root,
    num_train=4,
    num_val=4,
    img_size=64)
shapes = dict(type='CocoDataset', data_root=data_root)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        shapes,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        shapes,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric', ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))
default_hooks = dict(logger=dict(interval=1))
'''


def tiny_shapes_run(base: str) -> dict:
    """Train the tiny config for one epoch (2 iterations) under ``base``,
    unless a previous call did; returns the paths of the run."""
    run = dict(
        config=osp.join(base, 'tiny_shapes.py'),
        data_root=osp.join(base, 'shapes'),
        work_dir=osp.join(base, 'work'))
    run['checkpoint'] = osp.join(run['work_dir'], 'epoch_1.pth')
    if osp.isfile(run['checkpoint']):
        return run
    os.makedirs(base, exist_ok=True)
    with open(run['config'], 'w') as f:
        f.write(
            TINY_SHAPES_CONFIG.format(repo=REPO, data_root=run['data_root']))
    assert_ok(
        python_tool(
            'train.py', run['config'], '--work-dir', run['work_dir'],
            cwd=base))
    return run


@pytest.fixture(scope='module')
def shapes_run(tmp_path_factory) -> dict:
    return tiny_shapes_run(
        str(tmp_path_factory.getbasetemp() / 'tiny_shapes_run'))


def test_infer_tool_writes_a_drawing_and_a_json_per_image(
        shapes_run, tmp_path):
    from tood.apis import inference_detector, init_detector

    val_dir = osp.join(shapes_run['data_root'], 'val')
    stems = ['000000', '000001', '000002', '000003']
    sources = [osp.join(val_dir, f'{s}.png') for s in stems]
    model = init_detector(
        shapes_run['config'], shapes_run['checkpoint'], device='cpu')
    preds = [r.pred_instances for r in inference_detector(model, sources)]
    # A barely trained model scores everything low: a threshold in the
    # middle of its scores keeps some boxes and drops others.
    thr = round(float(preds[0].scores.median()), 4)

    out_dir = tmp_path / 'out'
    log = assert_ok(
        python_tool(
            'infer.py', val_dir, shapes_run['config'],
            shapes_run['checkpoint'], '--out-dir', str(out_dir),
            '--score-thr', str(thr), '--batch-size', '3', '--device', 'cpu',
            cwd=str(tmp_path)))
    assert '4/4' in log  # the progress bar finished
    assert f'4 images with their detections written to {out_dir}' in log
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        [f'{s}.json' for s in stems] + [f'{s}.png' for s in stems])

    for stem, source, pred in zip(stems, sources, preds):
        with open(out_dir / f'{stem}.json') as f:
            data = json.load(f)
        assert set(data) == {
            'image', 'width', 'height', 'bboxes', 'scores', 'labels',
            'class_names'
        }
        assert (data['image'], data['width'], data['height']) == (source,
                                                                  64, 64)
        # The Python API's detections at or above the threshold.
        expected = int((pred.scores >= thr).sum())
        assert len(data['bboxes']) == len(data['scores']) == len(
            data['labels']) == len(data['class_names']) == expected
        if stem == '000000':
            assert 0 < expected < len(pred)
        assert all(s >= thr - 1e-4 for s in data['scores'])
        assert data['class_names'] == [
            SHAPES_CLASSES[i] for i in data['labels']
        ]
        boxes = np.array(data['bboxes']).reshape(-1, 4)
        assert boxes.shape == (expected, 4)
        assert boxes.min(initial=0) >= 0 and boxes.max(initial=0) <= 64

        drawn = cv2.imread(str(out_dir / f'{stem}.png'))
        original = cv2.imread(source)
        assert drawn.shape == original.shape == (64, 64, 3)
        changed = (np.abs(drawn.astype(int) - original).max(-1) > 30).mean()
        assert (changed > 0.02) if expected else (changed == 0)


def test_infer_tool_says_when_nothing_matches(tmp_path):
    infer = runpy.run_path(osp.join(REPO, 'tools', 'infer.py'))
    with pytest.raises(SystemExit, match='no images found'):
        infer['main']([str(tmp_path / '*.jpg'), 'config.py', 'ckpt.pth'])


def test_print_config_merges_bases_and_applies_options(shapes_run):
    log = assert_ok(
        python_tool(
            'print_config.py', shapes_run['config'], '--cfg-options',
            'model.bbox_head.num_classes=3', 'model.bbox_head.typo_key=1',
            cwd=osp.dirname(shapes_run['config'])))
    # From the base files: the default runtime and the full TOOD head.
    assert "type='LocalVisBackend'" in log
    assert "type='TaskAlignedAssigner'" in log
    # From the config and the command line.
    assert 'num_classes=3' in log and 'num_classes=8' not in log
    assert "type='ShapesPreparer'" in log
    assert 'model.bbox_head.typo_key' in log  # the unknown key is named
    assert 'max_epochs=1' in log
