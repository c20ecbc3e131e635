# GFL (Li et al., NeurIPS 2020) with a ResNet-50 FPN, 1x: the TOOD R-50 1x
# recipe (backbone, FPN, data, schedule, test settings) with MMDetection 3's
# GFL head, losses and ATSS assignment. The detector class `TOOD` is the
# plain one-stage detector (backbone -> FPN -> dense head).
_base_ = '../tood/tood_r50_fpn_1x_coco.py'

model = dict(
    bbox_head=dict(
        _delete_=True,
        type='GFLHead',
        num_classes=80,
        in_channels=256,
        feat_channels=256,
        stacked_convs=4,
        strides=(8, 16, 32, 64, 128),
        # ATSS anchors: one square of 8 x stride per location.
        anchor_scale=8,
        # Each side: a distribution over 0..16 strides.
        reg_max=16,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        loss_cls=dict(
            type='QualityFocalLoss',
            activated=False,
            beta=2.0,
            loss_weight=1.0),
        loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        _delete_=True, assigner=dict(type='ATSSAssigner', topk=9)))
