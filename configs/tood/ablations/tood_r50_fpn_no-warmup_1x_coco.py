# TAL from the first epoch: no ATSS warm-up (the default warms up for
# 4 epochs).
_base_ = '../tood_r50_fpn_1x_coco.py'

model = dict(train_cfg=dict(initial_epoch=0))
