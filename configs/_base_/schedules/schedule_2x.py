# 24 epochs, lr x0.1 after epochs 16 and 22. The lr is TOOD's: 0.01 for a
# total batch of 16 (8 GPUs x 2 images); see auto_scale_lr for other sizes.
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=24, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=24,
        by_epoch=True,
        milestones=[16, 22],
        gamma=0.1)
]

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))

# With --auto-scale-lr the lr is scaled by (GPUs x batch per GPU) / 16.
auto_scale_lr = dict(enable=False, base_batch_size=16)
