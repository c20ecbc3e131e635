# The T-Head trained with ATSS assignment for the whole schedule: the
# warm-up never ends (initial_epoch >= max_epochs; 12 also covers the
# 6-epoch shapes run).
_base_ = '../tood_r50_fpn_1x_coco.py'

model = dict(train_cfg=dict(initial_epoch=12))
