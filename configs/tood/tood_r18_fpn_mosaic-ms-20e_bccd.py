# The BCCD recipe (tood_r18_fpn_ms-20e_bccd.py) with the augmentations of
# current one-stage detectors (YOLOX, RTMDet, ultralytics): mosaics of four
# images, mixup, random scaling and shifting, photometric distortion. As
# they do, the last epochs train without mosaic and mixup, on images like
# the test images (PipelineSwitchHook). Everything else (model, schedule,
# EMA, evaluation) is the base's. docs/training.md explains each transform.
_base_ = './tood_r18_fpn_ms-20e_bccd.py'

max_epochs = 20
# The last epochs without mosaic and mixup.
num_last_epochs = 5
# BCCD's photographs: 480x640 (height, width).
img_scale = (480, 640)

# Microscope images have no up, down, left or right.
flips = dict(
    type='RandomFlip',
    prob=[0.25, 0.25, 0.25],
    direction=['horizontal', 'vertical', 'diagonal'])
# Brightness, contrast and saturation as MMDetection's defaults; the hue
# turns less (up to 9 degrees, not 18): the stain's colours tell the
# cells apart.
photometric = dict(type='PhotoMetricDistortion', hue_delta=9)
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
    # Half the images blended with another of these mosaics (RTMDet-tiny's
    # settings).
    dict(
        type='CachedMixUp',
        img_scale=img_scale,
        ratio_range=(1.0, 1.0),
        max_cached_images=10,
        prob=0.5),
    photometric,
    multi_scale,
    flips,
    dict(type='PackDetInputs')
]
# The last num_last_epochs: the base's pipeline with the photometric
# distortion.
last_epochs_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    photometric,
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
