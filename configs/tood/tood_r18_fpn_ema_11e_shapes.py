# The main job with an exponential moving average (EMA) of the weights:
# validation, the checkpoints (and so tools/test.py, inference and ONNX
# export) use the averaged weights; --resume restores both sets
# (docs/training.md). `--cfg-options default_hooks.ema=None` turns it off.
_base_ = './tood_r18_fpn_11e_shapes.py'

default_hooks = dict(
    # In default_hooks (merged by key), so a config derived from this one
    # keeps it when it replaces custom_hooks.
    ema=dict(
        type='EMAHook',
        # momentum = max(0.004, gamma / (gamma + step)): with gamma=1 the
        # first ~250 iterations are a plain running mean (the random
        # initial weights wash out instead of lingering for thousands of
        # steps), then an EMA whose horizon is 1 / 0.004 = 250 iterations,
        # about one of this job's epochs (236 iterations; 2596 in all).
        # mmengine's default, 0.0002 (5000 iterations), is longer than the
        # whole run; MMDetection's detectors with EMA train for hundreds of
        # epochs.
        ema_type='MomentumAnnealingEMA',
        momentum=0.004,
        gamma=1,
        # BatchNorm's running statistics are averaged too, so that they
        # match the averaged weights.
        update_buffers=True))
