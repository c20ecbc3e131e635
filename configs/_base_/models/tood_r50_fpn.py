# TOOD with a ResNet-50 backbone and FPN (P3-P7), as in the paper's R-50
# 1x experiment.
model = dict(
    type='TOOD',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    # True: backbone and neck in NHWC memory order (faster on the CPU).
    channels_last=False,
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(
        type='FPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        add_extra_convs='on_output',
        num_outs=5),
    bbox_head=dict(
        type='TOODHead',
        num_classes=80,
        in_channels=256,
        feat_channels=256,
        stacked_convs=6,
        num_dcn=0,
        anchor_type='anchor_free',
        strides=(8, 16, 32, 64, 128),
        anchor_scale=8,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        use_layer_attention=True,
        use_cls_prob=True,
        use_reg_offset=True,
        initial_loss_cls=dict(
            type='FocalLoss',
            activated=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        loss_cls=dict(
            type='QualityFocalLoss',
            activated=True,
            beta=2.0,
            loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        # Epochs 0-3 assign with ATSS, later ones with task alignment; under
        # an iteration-based loop set initial_iter (warm-up iterations).
        initial_epoch=4,
        initial_assigner=dict(type='ATSSAssigner', topk=9),
        # inside_first=True: the inside-object test before the top-k;
        # conflict='min_area': a prior claimed by several GTs goes to the
        # smallest (the supplementary's rule) rather than the best IoU
        assigner=dict(
            type='TaskAlignedAssigner', topk=13, inside_first=False,
            conflict='max_iou'),
        alpha=1,
        beta=6,
        # True: positives trained towards 1 instead of t-hat (eq. 11)
        hard_labels=False),
    test_cfg=dict(
        nms_pre=1000,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100))
