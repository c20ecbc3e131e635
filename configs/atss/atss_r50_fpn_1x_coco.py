# ATSS (Zhang et al., CVPR 2020) with a ResNet-50 FPN, 1x: the TOOD R-50 1x
# recipe (backbone, FPN, data, schedule, test settings) with MMDetection 3's
# ATSS head, losses and assignment. The detector class `TOOD` is the plain
# one-stage detector (backbone -> FPN -> dense head).
_base_ = '../tood/tood_r50_fpn_1x_coco.py'

model = dict(
    bbox_head=dict(
        _delete_=True,
        type='ATSSHead',
        num_classes=80,
        in_channels=256,
        feat_channels=256,
        stacked_convs=4,
        strides=(8, 16, 32, 64, 128),
        # One square anchor of 8 x stride per location, DeltaXYWH coder.
        anchor_scale=8,
        bbox_coder_stds=(0.1, 0.1, 0.2, 0.2),
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        loss_cls=dict(
            type='FocalLoss',
            activated=False,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        loss_centerness=dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    train_cfg=dict(
        _delete_=True, assigner=dict(type='ATSSAssigner', topk=9)))
