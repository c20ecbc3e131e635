_base_ = './tood_r50_fpn_1x_coco.py'

# One square anchor (8 x stride) per location; boxes regress as deltas.
model = dict(bbox_head=dict(anchor_type='anchor_based'))
