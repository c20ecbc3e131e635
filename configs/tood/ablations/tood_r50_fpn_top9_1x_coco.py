# TAL: 9 candidates per object instead of 13.
_base_ = '../tood_r50_fpn_1x_coco.py'

model = dict(train_cfg=dict(assigner=dict(topk=9)))
