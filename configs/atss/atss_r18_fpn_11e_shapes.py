# ATSS on the built-in shapes dataset: the TOOD shapes run
# (configs/tood/tood_r18_fpn_11e_shapes.py) with the ATSS head sized like its
# T-Head; losses and assignment as in atss_r50_fpn_1x_coco.py (the head's
# defaults).
_base_ = '../tood/tood_r18_fpn_11e_shapes.py'

model = dict(
    bbox_head=dict(
        _delete_=True,
        type='ATSSHead',
        num_classes=8,
        in_channels=64,
        feat_channels=48,
        strides=(8, 16, 32, 64),
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True)),
    train_cfg=dict(
        _delete_=True, assigner=dict(type='ATSSAssigner', topk=9)))
