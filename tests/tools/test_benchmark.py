"""tools/analysis/benchmark.py, its measurements (benchmarking.py beside
it), and the speed paths of the assigners it measures (chunked dense
stage, two-stage top-k)."""
import json
import math
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from tool_helpers import R50_1X, REPO, load_analysis_tool, tiny_model_options
from torch.utils.benchmark.utils.common import Measurement, TaskSpec

from tood.engine import amp
from tood.engine.amp import CPUBFloat16OptimWrapper
from tood.registry import MODELS
from tood.utils import register_all_modules

sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))
import benchmarking  # noqa: E402
from benchmarking import (assign_inputs, detection_batch,  # noqa: E402
                          peak_memory, run_assigner, set_training_progress,
                          summarise, time_call, time_in_turns)

# Trainings, exports or tools in their own processes: seconds to
# minutes each (pytest -m "not e2e" leaves them out).
pytestmark = pytest.mark.e2e

# Tiny network, tiny input: the tool's code paths, not its numbers.
SHAPE = ['64', '96']
# tiny_model_options(3) as a config dict.
TINY_MODEL = {
    'model.backbone.depth': 18,
    'model.backbone.init_cfg': None,
    'model.neck.in_channels': [64, 128, 256, 512],
    'model.neck.out_channels': 16,
    'model.bbox_head.in_channels': 16,
    'model.bbox_head.feat_channels': 16,
    'model.bbox_head.stacked_convs': 2,
    'model.bbox_head.norm_cfg.num_groups': 4,
    'model.bbox_head.num_classes': 3,
}
# Priors of a 64x96 input at strides 8..128: 8x12 + 4x6 + 2x3 + 1x2 + 1x1.
NUM_PRIORS = 129
SHAPES_MAIN_JOB = osp.join(REPO, 'configs', 'tood',
                          'tood_r18_fpn_11e_shapes.py')


@pytest.fixture(scope='module')
def tool():
    return load_analysis_tool('benchmark')


def run(tool, tmp_path, *args):
    # One thread: small ops on two busy cores wait on each other.
    out = str(tmp_path / 'bench.json')
    tool.main([
        R50_1X, '--shape', *SHAPE, '--min-run-time', '0', '--repeats', '1',
        '--device', 'cpu', '--threads', '1', '--out', out, *args
    ])
    with open(out) as f:
        return json.load(f)


def test_assign_task(tool, tmp_path, keep_threads, capsys):
    payload = run(tool, tmp_path, '--task', 'assign', '--num-gts', '1', '4')
    assert payload['task'] == 'assign'
    assert payload['settings']['threads'] == 1
    assert payload['settings']['shape'] == [64, 96]
    assert 'cpu' in payload['machine'] and payload['command'].startswith(
        'python tools/analysis/benchmark.py')
    rows = payload['result']['rows']
    assert [(r['assigner'], r['num_gts']) for r in rows] == [
        ('TAL', 1), ('ATSS', 1), ('TAL', 4), ('ATSS', 4)]
    for r in rows:
        assert r['num_priors'] == NUM_PRIORS
        assert r['median_ms'] > 0 and r['min_ms'] <= r['max_ms']
        assert r['peak_mib'] > 0
        assert r['buffers'] == pytest.approx(
            r['peak_mib'] * 2**20 / (4 * NUM_PRIORS * r['num_gts']))
    assert 'ATSS' in capsys.readouterr().out


def test_train_task_with_amp(tool, tmp_path, keep_threads):
    payload = run(tool, tmp_path, '--task', 'train', '--amp', '--profile',
                  '5', '--cfg-options', *tiny_model_options(80))
    result = payload['result']
    # The wrapper tools/train.py --amp uses on the CPU.
    assert result['optim_wrapper'] == 'CPUBFloat16OptimWrapper'
    assert result['batch_size'] == 2 and result['images_per_s'] > 0
    assert result['peak_mib'] > 0
    assert all(math.isfinite(v) for v in result['losses'].values())
    assert result['losses']['loss_cls'] > 0
    assert set(result['phases_ms']) == {
        'preprocess', 'network_forward', 'targets_losses_forward',
        'assignment', 'losses_backward', 'network_backward', 'optimizer'
    }
    assert 0 < result['assignment_targets_losses_share'] < 1
    assert (result['phases_ms']['assignment'] <=
            result['phases_ms']['targets_losses_forward'])
    assert len(result['profile']) == 5
    regions = {r['name'] for r in result['profile_regions']}
    assert {'network', 'targets_losses', 'assignment'} <= regions


def test_train_compare_times_variants_in_turns(tool, tmp_path, keep_threads,
                                               monkeypatch):
    calls = []

    def record(fns, turns, runs_per_turn=1):
        calls.append(list(fns))
        return time_in_turns(fns, turns, runs_per_turn)

    monkeypatch.setattr(benchmarking, 'time_in_turns', record)
    payload = run(tool, tmp_path, '--task', 'train', '--compare',
                  'optim_wrapper.type=OptimWrapper model.channels_last=True',
                  'model.bbox_head.stacked_convs=1', '--cfg-options',
                  *tiny_model_options(80))
    variants = payload['result']['variants']
    names = ['the config',
             'optim_wrapper.type=OptimWrapper model.channels_last=True',
             'model.bbox_head.stacked_convs=1']
    assert list(variants) == names and calls == [names]
    assert variants['the config']['speed_up'] == 1.0
    for v in variants.values():
        assert v['repeats'] == 1 and v['images_per_s'] > 0
        assert v['speed_up'] == pytest.approx(
            variants['the config']['median_ms'] / v['median_ms'])
    assert variants[names[1]]['optim_wrapper'] == 'OptimWrapper'
    with pytest.raises(SystemExit, match='--task train'):
        run(tool, tmp_path, '--task', 'inference', '--compare', 'a=1')
    with pytest.raises(SystemExit, match='--real-data is for --compare'):
        run(tool, tmp_path, '--task', 'train', '--real-data')


def test_compare_on_real_data_draws_each_variant_from_its_loader(
        tool, tmp_path, keep_threads, monkeypatch):
    drawn = []
    cycle = benchmarking.cycle

    def record(loader):
        for batch in cycle(loader):
            drawn.append(loader.num_workers)
            yield batch

    monkeypatch.setattr(benchmarking, 'cycle', record)
    VARIANT = ('train_dataloader.num_workers=1 '
               'train_dataloader.persistent_workers=True '
               'train_dataloader.batch_size=1')
    out = str(tmp_path / 'bench.json')
    root = str(tmp_path / 'shapes') + '/'
    tool.main([
        SHAPES_MAIN_JOB, '--task', 'train', '--repeats', '2',
        '--min-run-time', '0', '--device', 'cpu', '--threads', '1', '--out',
        out, '--real-data', '3', '--compare', VARIANT, '--cfg-options',
        f'train_dataloader.dataset.data_root={root}',
        f'data_preparer.data_root={root}', 'data_preparer.num_train=6',
        'data_preparer.num_val=2', 'data_preparer.img_size=64',
        'train_dataloader.batch_size=2'
    ])
    with open(out) as f:
        result = json.load(f)['result']
    assert result['steps_per_turn'] == 3
    variants = result['variants']
    assert list(variants) == ['the config', VARIANT]
    for v, batch_size in zip(variants.values(), (2, 1)):
        assert v['repeats'] == 2
        assert v['images_per_s'] == pytest.approx(
            batch_size / v['median_ms'] * 1e3)
    # The first step (timed alone), 2 turns of (2 untimed + 3 timed) steps
    # and the step whose peak memory is measured, one batch per step, from
    # the config's loader (no workers) and the variant's (one worker).
    assert sorted(drawn) == [0] * 12 + [1] * 12


def test_time_in_turns_alternates():
    order = []
    timings = time_in_turns(
        {name: (lambda n=name: order.append(n)) for name in 'ab'},
        turns=3, runs_per_turn=2)
    # torch's Timer.timeit runs the statement twice untimed first.
    assert order == (['a'] * 4 + ['b'] * 4) * 3
    for t in timings.values():
        assert t['repeats'] == 3 and t['runs_per_repeat'] == 1
        assert 0 < t['min_ms'] <= t['median_ms'] <= t['max_ms']


def test_time_call_runs_blocks_for_the_time_asked():
    calls = []
    timing = time_call(lambda: calls.append(1), min_run_time=0)
    # One warm-up block, one timed block.
    assert timing['repeats'] == 1 and len(calls) >= 2
    assert timing['median_ms'] == timing['min_ms'] == timing['max_ms']


def test_inference_task(tool, tmp_path, keep_threads):
    payload = run(tool, tmp_path, '--task', 'inference', '--cfg-options',
                  *tiny_model_options(80))
    result = payload['result']
    assert [b['batch_size'] for b in result['batches']] == [1, 2]
    for b in result['batches']:
        assert b['ms_per_image'] == pytest.approx(b['median_ms'] /
                                                  b['batch_size'])
        assert b['images_per_s'] > 0 and b['peak_mib'] > 0
    assert set(result['phases_ms']) == {
        'preprocess', 'network', 'post_processing'
    }
    assert 0 < result['post_processing_share'] < 1
    assert 0 < result['saturated_post_processing_share'] < 1


def test_bfloat16_autocast_keeps_losses_finite(keep_threads, monkeypatch):
    """The optimizer wrapper of --amp on the CPU: the forward really runs
    in bfloat16, and TOOD's losses (ATSS warm-up and TAL) and gradients
    stay finite."""
    monkeypatch.setattr(amp, 'cpu_has_native_bfloat16', lambda: True)
    register_all_modules()
    cfg = Config.fromfile(R50_1X)
    cfg.merge_from_dict(TINY_MODEL)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    wrapper = CPUBFloat16OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    data = detection_batch(2, (64, 96), 3, num_classes=3)
    with wrapper.optim_context(model):
        inputs = model.data_preprocessor(data, True)['inputs']
        assert model.extract_feat(inputs)[0].dtype == torch.bfloat16
    torch.set_num_threads(1)
    for epoch in (0, cfg.model.train_cfg.initial_epoch):  # ATSS, then TAL
        set_training_progress(epoch)
        log_vars = model.train_step(data, wrapper)
        assert all(math.isfinite(v.item()) for v in log_vars.values())
        assert log_vars['loss_cls'].item() > 0
        assert all(
            torch.isfinite(p).all() for p in model.parameters())


def test_peak_memory_counts_torch_allocations():
    def fn():
        a = torch.ones(2**20)  # 4 MiB
        b = torch.ones(2**21)  # 8 MiB, both alive
        del a
        c = torch.ones(2**20)  # back to 12 MiB
        return float(b.sum() + c.sum())

    peak = peak_memory(fn, torch.device('cpu')) / 2**20
    assert 12 <= peak < 12.5


def test_summarise():
    measurement = Measurement(
        number_per_run=10, raw_times=[0.04, 0.01, 0.02, 0.03],
        task_spec=TaskSpec(stmt='fn()', setup='pass'))
    stats = summarise(measurement)
    assert stats['median_ms'] == pytest.approx(2.5)
    assert stats['iqr_ms'] == pytest.approx(1.5)
    assert (stats['min_ms'], stats['max_ms']) == (pytest.approx(1),
                                                  pytest.approx(4))
    assert (stats['repeats'], stats['runs_per_repeat']) == (4, 10)

