# TAL: only priors inside the object can be candidates; the inside test
# comes before the top-k instead of after it.
_base_ = '../tood_r50_fpn_1x_coco.py'

model = dict(train_cfg=dict(assigner=dict(inside_first=True)))
