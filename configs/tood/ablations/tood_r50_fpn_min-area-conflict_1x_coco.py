# TAL: a prior claimed by several GTs goes to the smallest of them (the
# rule the paper's supplementary describes) instead of the GT whose IoU with
# the prior's predicted box is highest (the published code's rule).
_base_ = '../tood_r50_fpn_1x_coco.py'

model = dict(train_cfg=dict(assigner=dict(conflict='min_area')))
