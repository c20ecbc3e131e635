_base_ = './tood_r101_fpn_ms-2x_coco.py'

# DCNv2 in every bottleneck of stages c3-c5 and in the head's first two
# interactive convs.
model = dict(
    backbone=dict(
        dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True)),
    bbox_head=dict(num_dcn=2))
