_base_ = [
    '../_base_/models/tood_r50_fpn.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
]
EXP_EPOCHS = 6
data_root = '/tmp/shapes256/'
model = dict(
    backbone=dict(depth=18, stem_channels=32, base_channels=32, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64, start_level=1, num_outs=4),
    bbox_head=dict(num_classes=8, in_channels=64, feat_channels=64, strides=(8, 16, 32, 64), norm_cfg=dict(type='GN', num_groups=16, requires_grad=True)),
    train_cfg=dict(initial_epoch=1))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(batch_size=8, num_workers=1, dataset=dict(type='ShapesDataset', img_size=256, data_root=data_root, ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'), filter_cfg=dict(filter_empty_gt=True, min_size=0), pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=1, dataset=dict(type='ShapesDataset', img_size=256, data_root=data_root, ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=EXP_EPOCHS, val_interval=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', begin=0, end=EXP_EPOCHS, by_epoch=True, eta_min_ratio=0.01, convert_to_iter_based=True)
]
optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=0.002, weight_decay=0.05))
default_hooks = dict(logger=dict(interval=25))
