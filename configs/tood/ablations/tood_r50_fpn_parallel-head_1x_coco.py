# The head comparison: ATSS's parallel towers (4 convs each, no centerness
# branch) instead of the T-Head, trained and decoded exactly like it (ATSS
# warm-up, then TAL with the same losses: the head's defaults are TOODHead's).
_base_ = '../tood_r50_fpn_1x_coco.py'

model = dict(
    bbox_head=dict(
        _delete_=True,
        type='ParallelHead',
        num_classes=80,
        in_channels=256,
        feat_channels=256,
        stacked_convs=4,
        anchor_type='anchor_free',
        strides=(8, 16, 32, 64, 128),
        anchor_scale=8,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)))
