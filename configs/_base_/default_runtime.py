default_scope = 'tood'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # tood's CheckpointHook: atomic, and never saves NaN weights.
    # save_best='coco/bbox_mAP' (or 'auto': the first metric) also keeps
    # the checkpoint of the best validation (docs/training.md).
    checkpoint=dict(
        type='CheckpointHook', interval=1, max_keep_ckpts=3, save_best=None),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # Draws test predictions; tools/test.py --show-dir switches it on.
    visualization=dict(type='DetVisualizationHook'),
    # Safety checks; in default_hooks (merged by key) rather than
    # custom_hooks (a list that configs replace), so they stay on.
    # Stops at the first NaN/inf loss; logs losses averaged over processes.
    loss_check=dict(type='LossCheckHook'),
    # model num_classes == number of dataset classes.
    num_class_check=dict(type='NumClassCheckHook'),
    # Same random augmentations per epoch after --resume.
    epoch_seed=dict(type='EpochSeedHook'),
    # At every validation, beside the metrics: how aligned classification
    # and localisation are, and what TAL assigned since (align/*).
    alignment=dict(type='AlignmentHook'))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py and tools/test.py switch to gloo when there is no CUDA.
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='Visualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
