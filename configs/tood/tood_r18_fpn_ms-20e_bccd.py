# TOOD from scratch on real photographs: BCCD, blood-cell microscope images
# in Pascal VOC format (RBC, WBC, Platelets; 292 trainval and 72 test images
# of 640x480). Get the data with
#   python tools/misc/download_dataset.py bccd      (-> data/bccd/BCCD/...)
# It is the main job (tood_r18_fpn_11e_shapes.py: model, optimizer, report)
# with its datasets pointed at BCCD, which is how a config for one's own data
# is written (docs/data.md), and the training changed where small real
# objects need it: multi-scale input, flips in every direction, an average
# of the weights. Trained on trainval, tested on test, reporting VOC
# mAP@0.5 per class and COCO-style AP (results: docs/bccd.md).
_base_ = './tood_r18_fpn_11e_shapes.py'

max_epochs = 20
data_root = 'data/bccd/'
metainfo = dict(classes=('RBC', 'WBC', 'Platelets'))

model = dict(
    bbox_head=dict(num_classes=3),
    # ATSS assignment for the first 2 epochs.
    train_cfg=dict(initial_epoch=2),
    # Keep low-scoring boxes: they add recall at the tail of the AP curves.
    test_cfg=dict(score_thr=0.001))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    # Long side 448-576 (of 640): platelets, about 30 px in the original,
    # are seen at several sizes around their size at test time.
    dict(type='RandomResize', scale=[(448, 448), (576, 576)],
         keep_ratio=True),
    # Microscope images have no up, down, left or right.
    dict(
        type='RandomFlip',
        prob=[0.25, 0.25, 0.25],
        direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    # The largest training scale, as MMDetection's multi-scale configs test.
    dict(type='Resize', scale=(576, 576), keep_ratio=True),
    # After Resize: the ground truth stays in the original frame, which the
    # metrics read from the data samples (no COCO json).
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
# Only the data changes: type, root, split files, classes. (The data_prefix
# img='train/' inherited from the shapes config is not read by VOCDataset,
# whose images are in <VOC folder>/JPEGImages/.)
train_dataloader = dict(
    dataset=dict(
        type='VOCDataset',
        data_root=data_root,
        ann_file='BCCD/ImageSets/Main/trainval.txt',
        metainfo=metainfo,
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        type='VOCDataset',
        data_root=data_root,
        ann_file='BCCD/ImageSets/Main/test.txt',
        metainfo=metainfo,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
# VOC mAP@0.5 (VOC2010+ area under the curve) and COCO AP@[.5:.95] from the
# same detections; without an ann_file the COCO metric takes the ground
# truth from the data samples.
val_evaluator = [
    dict(type='VOCMetric', eval_mode='area', classwise=True),
    dict(type='CocoMetric', ann_file=None, classwise=True)
]
test_evaluator = val_evaluator

# Evaluated once, after the last epoch: the test split selects nothing.
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
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1),
    # Evaluation (and the saved weights) use an exponential moving average
    # of the weights; the newest step weighs 10 / (10 + step), so the
    # average follows training closely at first and spans roughly the last
    # hundred steps at the end. In default_hooks, merged by key, so a
    # config derived from this one keeps it when it replaces custom_hooks.
    ema=dict(
        type='EMAHook',
        ema_type='MomentumAnnealingEMA',
        momentum=0.01,
        gamma=10,
        update_buffers=True))
custom_hooks = [dict(type='TrainingReportHook', num_images=8)]
