# TAL: alignment metric t = s^1 * u^8 (eq. 9; the paper's default is
# alpha 1, beta 6).
_base_ = '../tood_r50_fpn_1x_coco.py'

model = dict(train_cfg=dict(alpha=1, beta=8))
