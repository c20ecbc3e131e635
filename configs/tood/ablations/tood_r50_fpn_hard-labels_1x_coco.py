# TAL picks the positives as usual, but they are trained towards 1
# instead of the normalised alignment t-hat: classification target 1,
# box weight 1, both losses normalised by the number of positives.
_base_ = '../tood_r50_fpn_1x_coco.py'

model = dict(train_cfg=dict(hard_labels=True))
