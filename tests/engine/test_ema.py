"""The EMA switch (``default_hooks.ema``) of the main job's EMA config, on
a tiny shapes set: that the average follows the configured formula at
every iteration, what validation, checkpoints, tools/test.py and
init_detector use, what --resume restores, and the switch turned off.

Four short runs of the main job's model on 16 images of 64x64 (4
iterations per epoch, 2 epochs, validation after each), in this process
through ``run_tool`` as tools/train.py runs them:

* ``ema``: the EMA config, uninterrupted;
* ``resumed``: the EMA config resumed from the ``ema`` run's epoch 1;
* ``resumed_off``: the same with ``default_hooks.ema=None``;
* ``off``: the EMA config with ``default_hooks.ema=None`` from the start.
"""
import importlib.util
import os.path as osp
import pickle

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from tood.apis import init_detector
from tood.engine import averaged_model, load_config, load_from_local, run_tool
from tood.errors import ConfigError
from tood.registry import HOOKS

from main_job_helpers import EMA_CONFIG, REPO, as_arguments, tiny_options

# Trainings, exports or tools in their own processes: seconds to
# minutes each (pytest -m "not e2e" leaves them out).
pytestmark = pytest.mark.e2e

CONFIG = EMA_CONFIG


@HOOKS.register_module()
class ValWeightsRecorder(Hook):
    """Keeps a copy of the model's weights as each validation epoch sees
    them (after the EMA hook, priority NORMAL, has swapped them in)."""

    priority = 'LOW'
    seen = []

    def before_val_epoch(self, runner) -> None:
        type(self).seen.append({
            k: v.detach().clone()
            for k, v in runner.model.state_dict().items()
        })


# The averaging the config asks for (MomentumAnnealingEMA, momentum
# 0.004, gamma 1, every iteration, buffers too).
EMA = dict(load_config(CONFIG).default_hooks.ema)


def expected_average(previous: dict, raw: dict, step: int) -> dict:
    """The average after update ``step`` (0-based) of mmengine's
    MomentumAnnealingEMA as the config sets it: update 0 copies the raw
    weights; update s moves every floating-point entry (the parameters
    and, with update_buffers, the buffers) towards the raw one by
    m = max(momentum, gamma / (gamma + s)): (1 - m) * average + m * raw,
    evaluated as torch.lerp does so that equality can be exact. Integer
    buffers keep their first value."""
    if step == 0:
        return raw
    momentum = max(EMA['momentum'], EMA['gamma'] / (EMA['gamma'] + step))
    return {
        key: (value.lerp(raw[key], momentum)
              if value.is_floating_point() else value)
        for key, value in previous.items()
    }


def copy_state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@HOOKS.register_module()
class AveragingChecker(Hook):
    """After every training iteration (after the EMA hook, priority
    NORMAL, has updated its copy), compares the averaged weights with
    :func:`expected_average` of the previous average and the model's raw
    weights; keeps (iteration, the keys that differ)."""

    priority = 'LOW'
    checked = []

    def before_train(self, runner) -> None:
        averaged = averaged_model(runner)
        self.previous = None if averaged is None else copy_state(averaged)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        averaged = averaged_model(runner)
        if averaged is None:
            return
        expected = expected_average(self.previous,
                                    runner.model.state_dict(), runner.iter)
        now = averaged.state_dict()
        type(self).checked.append((runner.iter, [
            k for k in now if not torch.equal(now[k], expected[k])
        ]))
        self.previous = copy_state(averaged)


def train(root: str, work_dir: str, **options):
    """Run the EMA config through run_tool; returns the runner, the
    weights seen by each validation, the path of the predictions the
    last validation dumped and the averaging checks of each iteration
    (:class:`AveragingChecker`)."""
    options = {
        **tiny_options(root), 'custom_hooks': [
            dict(type='ValWeightsRecorder'),
            dict(type='AveragingChecker')
        ], **options
    }
    cfg = load_config(CONFIG, options, work_dir=work_dir)
    dump = osp.join(work_dir, 'val_predictions.pkl')
    cfg.val_evaluator = [
        cfg.val_evaluator,
        dict(type='DumpResults', out_file_path=dump)
    ]
    ValWeightsRecorder.seen = []
    AveragingChecker.checked = []
    runner = run_tool(cfg, 'train', train_and_keep)
    return runner, list(ValWeightsRecorder.seen), dump, list(
        AveragingChecker.checked)


def train_and_keep(runner: Runner) -> Runner:
    runner.train()
    return runner


def raw_weights(checkpoint: dict) -> dict:
    """The raw (not averaged) weights of a checkpoint written with EMA."""
    return {
        k[len('module.'):]: v
        for k, v in checkpoint['ema_state_dict'].items()
        if k.startswith('module.')
    }


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def differs(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a
               if a[k].is_floating_point())


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    work = tmp_path_factory.mktemp('work')
    result = dict(root=root)
    result['ema'] = train(root, str(work / 'ema'))
    first = str(work / 'ema' / 'epoch_1.pth')
    for name, options in (('resumed', {}),
                          ('resumed_off', {'default_hooks.ema': None})):
        result[name] = train(root, str(work / name), resume=True,
                             load_from=first, **options)
    result['off'] = train(root, str(work / 'off'),
                          **{'default_hooks.ema': None})
    return result


def checkpoint(runs, name: str, epoch: int = 2) -> dict:
    work_dir = runs[name][0].work_dir
    return load_from_local(osp.join(work_dir, f'epoch_{epoch}.pth'))


def test_validation_and_checkpoints_use_the_averaged_weights(runs):
    runner, seen, _, _ = runs['ema']
    for epoch in (1, 2):
        ckpt = checkpoint(runs, 'ema', epoch)
        # state_dict: the averaged weights, which validation saw; the raw
        # ones are kept for --resume and differ.
        assert_same(seen[epoch - 1], ckpt['state_dict'])
        assert differs(ckpt['state_dict'], raw_weights(ckpt))
    ckpt = checkpoint(runs, 'ema')
    # After training the runner's model holds the raw weights and the EMA
    # hook's copy the averaged ones.
    assert_same(
        {k: v for k, v in runner.model.state_dict().items()},
        raw_weights(ckpt))
    assert_same(averaged_model(runner).state_dict(), ckpt['state_dict'])


def test_test_tool_and_init_detector_use_the_averaged_weights(
        runs, tmp_path):
    runner, _, val_dump, _ = runs['ema']
    ckpt_path = osp.join(runner.work_dir, 'epoch_2.pth')
    spec = importlib.util.spec_from_file_location(
        'tood_tools_test', osp.join(REPO, 'tools', 'test.py'))
    test_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_tool)
    with open(val_dump, 'rb') as f:
        validated = pickle.load(f)

    options = as_arguments(tiny_options(runs['root']))
    for switch in ([], ['default_hooks.ema=None']):
        out = str(tmp_path / f'preds{len(switch)}.pkl')
        test_tool.main([
            CONFIG, ckpt_path, '--work-dir',
            str(tmp_path / 'test'), '--out', out, '--cfg-options', *options,
            *switch
        ])
        with open(out, 'rb') as f:
            tested = pickle.load(f)
        # The epoch-2 validation's detections, with the EMA hook or not.
        assert len(tested) == len(validated)
        for a, b in zip(tested, validated):
            assert torch.equal(a['pred_instances']['scores'],
                               b['pred_instances']['scores'])
            assert torch.equal(a['pred_instances']['bboxes'],
                               b['pred_instances']['bboxes'])

    model = init_detector(CONFIG, ckpt_path, device='cpu')
    assert_same(model.state_dict(), checkpoint(runs, 'ema')['state_dict'])


@pytest.mark.parametrize('name, iterations', [('ema', range(8)),
                                              ('resumed', range(4, 8))])
def test_the_average_follows_the_configured_formula(runs, name,
                                                    iterations):
    # Every iteration, from the first (which copies the raw weights) and
    # after --resume, exactly.
    checked = runs[name][3]
    assert [it for it, _ in checked] == list(iterations)
    assert all(not keys for _, keys in checked), checked


def test_the_momentum_floor_after_the_annealing():
    """The configured hook on a small model: after gamma / (gamma + s)
    falls below momentum (s > 249), every update moves by momentum."""
    from types import SimpleNamespace
    hook = HOOKS.build(load_config(CONFIG).default_hooks.ema)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4),
                                torch.nn.BatchNorm1d(4))
    runner = SimpleNamespace(model=model, iter=0, epoch=0)
    hook.before_run(runner)
    generator = torch.Generator().manual_seed(0)
    previous = copy_state(hook.ema_model.module)
    for step in range(260):
        with torch.no_grad():
            for value in model.state_dict().values():
                if value.is_floating_point():
                    value.add_(torch.randn(value.shape,
                                           generator=generator))
            model.state_dict()['1.num_batches_tracked'].add_(1)
        runner.iter = step
        hook.after_train_iter(runner, step)
        now = hook.ema_model.module.state_dict()
        expected = expected_average(previous, model.state_dict(), step)
        assert all(torch.equal(now[k], expected[k]) for k in now), step
        previous = copy_state(hook.ema_model.module)
    assert EMA['gamma'] / (EMA['gamma'] + 259) < EMA['momentum']


def test_resume_restores_raw_and_averaged_weights(runs):
    expected = checkpoint(runs, 'ema')
    resumed = checkpoint(runs, 'resumed')
    assert_same(resumed['state_dict'], expected['state_dict'])
    assert_same(resumed['ema_state_dict'], expected['ema_state_dict'])


def test_switched_off_it_is_the_plain_run(runs):
    raw = raw_weights(checkpoint(runs, 'ema'))
    off = checkpoint(runs, 'off')
    assert 'ema_state_dict' not in off
    assert not any(type(h).__name__ == 'EMAHook' for h in runs['off'][0].hooks)
    # Averaging only watches: the raw weights are those of a run without it.
    assert_same(off['state_dict'], raw)
    # A checkpoint written with EMA, resumed without it, goes on from its
    # raw weights.
    assert_same(checkpoint(runs, 'resumed_off')['state_dict'], raw)


def test_bad_settings_stop_at_build_with_their_key():
    from tood.engine.hooks.ema_hook import EMAHook
    with pytest.raises(ConfigError, match='momentun'):
        EMAHook(ema_type='MomentumAnnealingEMA', momentun=0.004)
    with pytest.raises(ConfigError, match='momentum must be in'):
        EMAHook(momentum=4)
    with pytest.raises(ConfigError, match='ExpMomentumEMA'):
        EMAHook(ema_type='ExpMomentumEMA')
    # The main job's settings build.
    cfg = load_config(CONFIG)
    hook = HOOKS.build(cfg.default_hooks.ema)
    assert hook.ema_cfg == dict(type='MomentumAnnealingEMA', momentum=0.004,
                                gamma=1, update_buffers=True)
