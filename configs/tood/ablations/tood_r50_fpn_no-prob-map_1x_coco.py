# T-Head without the probability map M (eq. 5, 7): the score is the
# class probability itself.
_base_ = '../tood_r50_fpn_1x_coco.py'

model = dict(bbox_head=dict(use_cls_prob=False))
