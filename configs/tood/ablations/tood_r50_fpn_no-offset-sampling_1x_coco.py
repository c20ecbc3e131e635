# T-Head without the offset map O (eq. 6, 8): boxes are not resampled.
_base_ = '../tood_r50_fpn_1x_coco.py'

model = dict(bbox_head=dict(use_reg_offset=False))
