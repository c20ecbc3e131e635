# tood_r50_fpn_parallel-head_1x_coco.py on the built-in shapes dataset: the
# shapes run (../tood_r18_fpn_11e_shapes.py) with the parallel head sized like
# its T-Head, anchor-based like it.
_base_ = '../tood_r18_fpn_11e_shapes.py'

model = dict(
    bbox_head=dict(
        _delete_=True,
        type='ParallelHead',
        num_classes=8,
        in_channels=64,
        feat_channels=48,
        stacked_convs=4,
        anchor_type='anchor_based',
        strides=(8, 16, 32, 64),
        anchor_scale=8,
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True)))
