_base_ = './tood_r50_fpn_ms-2x_coco.py'

# 'open-mmlab://resnext101_64x4d' is downloaded once into the torch hub cache
# (~/.cache/torch/hub/checkpoints). On a machine without internet access it
# must be a local file: download resnext101_64x4d-ee2c6f71.pth elsewhere and
# set its path here or with
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/it.pth
model = dict(
    backbone=dict(
        type='ResNeXt',
        depth=101,
        groups=64,
        base_width=4,
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://resnext101_64x4d')))
