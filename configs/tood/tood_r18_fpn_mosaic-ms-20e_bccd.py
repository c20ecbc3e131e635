# The BCCD recipe (tood_r18_fpn_ms-20e_bccd.py) with the mosaic of current
# one-stage detectors (YOLOX, RTMDet, ultralytics): four images around a
# random centre, randomly scaled and shifted. As they do, the last epochs
# train without it, on images like the test images (PipelineSwitchHook).
# Everything else (model, schedule, EMA, evaluation) is the base's.
# Mixup and photometric distortion, the other two transforms of those
# recipes, each lowered BCCD's AP here and are left out (measured side by
# side in docs/training.md, which explains each transform).
_base_ = './tood_r18_fpn_ms-20e_bccd.py'

max_epochs = 20
# The last epochs without the mosaic.
num_last_epochs = 5
# BCCD's photographs: 480x640 (height, width).
img_scale = (480, 640)

# Microscope images have no up, down, left or right.
flips = dict(
    type='RandomFlip',
    prob=[0.25, 0.25, 0.25],
    direction=['horizontal', 'vertical', 'diagonal'])
# As the base: long side 448-576.
multi_scale = dict(
    type='RandomResize', scale=[(448, 448), (576, 576)], keep_ratio=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    # The image and three recent ones around a random centre: 960x1280.
    dict(type='CachedMosaic', img_scale=img_scale, max_cached_images=20),
    # Scaled 0.75-1.25 about the mosaic's centre and shifted up to a tenth,
    # then the middle 480x640 is kept (the negative border).
    dict(
        type='RandomAffine',
        max_rotate_degree=0,
        max_shear_degree=0,
        scaling_ratio_range=(0.75, 1.25),
        max_translate_ratio=0.1,
        border=(-img_scale[0] // 2, -img_scale[1] // 2)),
    multi_scale,
    flips,
    dict(type='PackDetInputs')
]
# The last num_last_epochs: the base's pipeline.
last_epochs_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    multi_scale,
    flips,
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

custom_hooks = [
    dict(type='TrainingReportHook', num_images=8),
    dict(
        type='PipelineSwitchHook',
        switch_epoch=max_epochs - num_last_epochs,
        switch_pipeline=last_epochs_pipeline)
]
