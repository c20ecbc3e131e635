# T-Head without layer attention (eq. 3): each task feature is a plain
# 1x1 conv of the concatenated interactive features.
_base_ = '../tood_r50_fpn_1x_coco.py'

model = dict(bbox_head=dict(use_layer_attention=False))
