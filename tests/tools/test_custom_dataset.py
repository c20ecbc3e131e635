"""A user's own COCO-format dataset: category ids 3 and 7, classes listed in
another order than the file's categories."""
import json
import os.path as osp
import pickle

import pytest
from tool_helpers import (R50_1X, assert_ok, load_checkpoint, make_coco,
                         python_tool)
from mmengine.config import Config

from tood.registry import DATASETS
from tood.utils import register_all_modules

# Trainings, exports or tools in their own processes: seconds to
# minutes each (pytest -m "not e2e" leaves them out).
pytestmark = pytest.mark.e2e

# The file lists triangle (id 3) before square (id 7); the config asks for
# square first, so label 0 is square = category 7.
CATEGORIES = [dict(id=3, name='triangle'), dict(id=7, name='square')]
CLASSES = ('square', 'triangle')

CONFIG = """
_base_ = {base!r}

data_root = {root!r}
metainfo = dict(classes={classes!r})

model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=16),
    bbox_head=dict(
        num_classes=2, in_channels=16, feat_channels=16, stacked_convs=2,
        norm_cfg=dict(type='GN', num_groups=4, requires_grad=True)),
    test_cfg=dict(score_thr=0.0))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 96), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 96), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(
        data_root=data_root, metainfo=metainfo,
        ann_file='annotations/train.json', data_prefix=dict(img='images/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(
        data_root=data_root, metainfo=metainfo,
        ann_file='annotations/val.json', data_prefix=dict(img='images/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json',
                     classwise=True)
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
"""


@pytest.fixture(scope='module')
def custom(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('custom'))
    make_coco(root, CATEGORIES, 4, 'train', seed=2)
    make_coco(root, CATEGORIES, 2, 'val', seed=3)
    config = osp.join(root, 'tood_r18_custom.py')
    with open(config, 'w') as f:
        f.write(CONFIG.format(base=R50_1X, root=root + '/', classes=CLASSES))
    return root, config


def test_labels_follow_the_configured_class_order(custom):
    _, config = custom
    register_all_modules()
    cfg = Config.fromfile(config)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert dataset.metainfo['classes'] == CLASSES
    labels = {}
    with open(osp.join(cfg.data_root, 'annotations', 'train.json')) as f:
        ann = json.load(f)
    boxes_by_cat = {(a['image_id'], tuple(a['bbox'])): a['category_id']
                    for a in ann['annotations']}
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        for inst in info['instances']:
            x1, y1, x2, y2 = inst['bbox']
            key = (info['img_id'], (round(x1), round(y1), round(x2 - x1),
                                    round(y2 - y1)))
            labels[boxes_by_cat[key]] = inst['bbox_label']
    assert labels == {7: 0, 3: 1}


def test_custom_dataset_trains_and_evaluates_by_name(custom, tmp_path):
    root, config = custom
    work_dir = str(tmp_path / 'work')
    log = assert_ok(
        python_tool('train.py', config, '--work-dir', work_dir, cwd=root))
    assert 'coco/bbox_mAP:' in log
    ckpt = load_checkpoint(osp.join(work_dir, 'epoch_1.pth'))
    assert ckpt['meta']['dataset_meta']['classes'] == CLASSES

    # Raw predictions (labels) and COCO json (category ids) of one run.
    out = tmp_path / 'preds.pkl'
    log = assert_ok(
        python_tool(
            'test.py', config, osp.join(work_dir, 'epoch_1.pth'), '--out',
            str(out), '--work-dir', str(tmp_path / 'test_work'),
            '--cfg-options',
            f'test_evaluator.outfile_prefix={tmp_path / "results"}',
            cwd=root))
    # The per-class table names the classes in the configured order.
    table = log[log.index('per-class bbox AP'):]
    assert table.index('square') < table.index('triangle')
    assert 'coco/bbox_square_AP' in log

    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    with open(tmp_path / 'results.bbox.json') as f:
        detections = json.load(f)
    # Both metrics saw the same samples in the same order, and the COCO json
    # keeps each image's detections in the model's order.
    labels = [(pred['img_id'], label) for pred in predictions
              for label in pred['pred_instances']['labels'].tolist()]
    categories = [(det['image_id'], det['category_id']) for det in detections]
    assert len(labels) == len(categories) > 0
    assert [img for img, _ in labels] == [img for img, _ in categories]
    pairs = {(label, category)
             for (_, label), (_, category) in zip(labels, categories)}
    assert pairs <= {(0, 7), (1, 3)}
