# Fine-tuning TOOD R-50 trained on COCO on a small dataset of one's own:
# BCCD here (3 classes, 292 training images); copy this file and change the
# data lines (docs/finetuning.md). The COCO weights come from MMDetection's
# or the official TOOD release, converted once:
#   python tools/model_converters/tood_mmdet_to_tood.py \
#       tood_r50_fpn_1x_coco.pth checkpoints/tood_r50_fpn_1x_coco.pth \
#       --config configs/tood/tood_r50_fpn_1x_coco.py
# Classes whose names match COCO's keep their classifier rows; the others
# start fresh; every other weight is loaded.
_base_ = './tood_r50_fpn_1x_coco.py'

load_from = 'checkpoints/tood_r50_fpn_1x_coco.pth'
max_epochs = 12
data_root = 'data/bccd/'
metainfo = dict(classes=('RBC', 'WBC', 'Platelets'))

model = dict(
    # The backbone's weights come with load_from, not from ImageNet.
    backbone=dict(init_cfg=None),
    bbox_head=dict(num_classes=3),
    # The head is trained already: task-aligned assignment from the first
    # iteration, no ATSS warm-up.
    train_cfg=dict(initial_epoch=0),
    test_cfg=dict(score_thr=0.001))

# BCCD's photographs are 640x480: train at 480-640 on the long side, test
# at 640; flips in every direction (microscope images have no up).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=[(480, 480), (640, 640)],
         keep_ratio=True),
    dict(
        type='RandomFlip',
        prob=[0.25, 0.25, 0.25],
        direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(640, 640), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    dataset=dict(
        type='VOCDataset',
        data_root=data_root,
        ann_file='BCCD/ImageSets/Main/trainval.txt',
        data_prefix=dict(img=''),
        metainfo=metainfo,
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        type='VOCDataset',
        data_root=data_root,
        ann_file='BCCD/ImageSets/Main/test.txt',
        data_prefix=dict(img=''),
        metainfo=metainfo,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='VOCMetric', eval_mode='area', classwise=True),
    dict(type='CocoMetric', ann_file=None, classwise=True)
]
test_evaluator = val_evaluator

# Small data, trained weights: a quarter of the COCO learning rate for the
# same batch (0.01 for 16 images -> 0.0025 for 8), a short linear warm-up,
# a cosine decay over 12 epochs, and an average of the weights.
optim_wrapper = dict(optimizer=dict(lr=0.0025))
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=100),
    dict(
        type='CosineAnnealingLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        eta_min_ratio=0.01,
        convert_to_iter_based=True)
]
default_hooks = dict(
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1),
    ema=dict(
        type='EMAHook',
        ema_type='MomentumAnnealingEMA',
        momentum=0.01,
        gamma=10,
        update_buffers=True))
