# A TOOD small enough to train for a few iterations in seconds on a CPU,
# on a shapes set (tood.datasets.shapes.generate_shapes) in the working
# directory: annotations/instances_{train,val}.json, train/, val/.
_base_ = [
    '../../configs/_base_/models/tood_r50_fpn.py',
    '../../configs/_base_/datasets/coco_detection.py',
    '../../configs/_base_/schedules/schedule_1x.py',
    '../../configs/_base_/default_runtime.py'
]
# BN stays in eval mode (norm_eval=True from the base) and the head uses
# GN: no layer mixes the images of a batch, so one process with 2 images
# per batch computes what two processes with 1 image each do.
model = dict(
    backbone=dict(
        depth=18, stem_channels=8, base_channels=8, init_cfg=None),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16, num_outs=4),
    bbox_head=dict(
        num_classes=8,
        in_channels=16,
        feat_channels=16,
        stacked_convs=2,
        strides=(8, 16, 32, 64),
        norm_cfg=dict(type='GN', num_groups=4, requires_grad=True)),
    train_cfg=dict(initial_epoch=1),
    # The untrained head scores about 0.01: keep its detections so the
    # metrics compared between runs are not all zero.
    test_cfg=dict(score_thr=0.001))

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
    persistent_workers=False,
    dataset=dict(
        data_root='',
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root='',
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file='annotations/instances_val.json')
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=2, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
    dict(type='MultiStepLR', begin=0, end=2, by_epoch=True, milestones=[1])
]
optim_wrapper = dict(optimizer=dict(lr=0.01))
default_hooks = dict(logger=dict(interval=1))
# One value per iteration in the log, not a running mean.
log_processor = dict(window_size=1)
randomness = dict(seed=0, deterministic=True)
