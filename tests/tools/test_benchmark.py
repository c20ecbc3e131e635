"""tools/analysis/benchmark.py: its three tasks on a tiny network and
input, and the compiled twins of --compile (their code paths, not their
numbers)."""
import json

import pytest
import torch
import torch._dynamo
from tool_helpers import R50_1X, load_analysis_tool, tiny_model_options

from tood.analysis.benchmarking import assign_inputs
from tood.apis import init_detector

# Each test runs the tool end to end: seconds each.
pytestmark = pytest.mark.e2e

SHAPE = ['64', '96']
# Priors of a 64x96 input at strides 8..128: 8x12 + 4x6 + 2x3 + 1x2 + 1x1.
NUM_PRIORS = 129
STEP_PHASES = ['network', 'losses', 'assignment', 'backward', 'optimizer',
               'other', 'step']


@pytest.fixture(scope='module')
def tool():
    return load_analysis_tool('benchmark')


def run(tool, tmp_path, *args):
    # One thread: small ops on two busy cores wait on each other.
    out = str(tmp_path / 'bench.json')
    tool.main([R50_1X, '--shape', *SHAPE, '--min-run-time', '0',
               '--repeats', '2', '--device', 'cpu', '--threads', '1',
               '--out', out, *args])
    with open(out) as f:
        return json.load(f)


def test_assign_task_times_the_criterion_assigners(tool, tmp_path,
                                                   keep_threads, capsys):
    payload = run(tool, tmp_path, '--task', 'assign', '--num-gts', '1', '4')
    assert payload['task'] == 'assign'
    assert payload['settings']['threads'] == 1
    assert payload['command'].startswith('python tools/analysis/benchmark.py')
    rows = payload['result']['rows']
    assert [(r['assigner'], r['num_gts']) for r in rows] == [
        ('TAL', 1), ('ATSS', 1), ('TAL', 4), ('ATSS', 4)]
    # The same inputs (seed: the number of GTs) and assigners as training
    # builds give the same assignment, bit for bit.
    criterion = init_detector(R50_1X, None, 'cpu').bbox_head.criterion
    for r, assigner in zip(rows, [criterion.assigner,
                                  criterion.initial_assigner] * 2):
        inputs = assign_inputs(r['num_gts'], 1, (64, 96), 80,
                               (8, 16, 32, 64, 128), 8.0, r['num_gts'],
                               torch.device('cpu'))
        result = assigner.assign(inputs['priors'], inputs['gt'],
                                 inputs['pred_scores'], inputs['pred_bboxes'])
        assert r['digest'] == tool.digest(result)
        assert r['positives'] == int(result.fg_mask.sum()) > 0
        assert r['num_priors'] == NUM_PRIORS
        assert r['buffers'] == pytest.approx(
            r['peak_mib'] * 2**20 / (4 * NUM_PRIORS * r['num_gts']))
    assert 'digest' in capsys.readouterr().out


def test_train_task_compares_variants_and_splits_the_step(
        tool, tmp_path, keep_threads, monkeypatch):
    turns = []
    time_in_turns = tool.time_in_turns

    def record(fns, n):
        turns.append((list(fns), n))
        return time_in_turns(fns, n)

    monkeypatch.setattr(tool, 'time_in_turns', record)
    bf16 = 'optim_wrapper.type=CPUBFloat16OptimWrapper'
    payload = run(tool, tmp_path, '--task', 'train', '--compare', bf16,
                  '--cfg-options', *tiny_model_options(80))
    assert turns == [(['the config', bf16], 2)]
    result = payload['result']
    config, variant = result['variants'].values()
    assert config['speed_up'] == 1.0 and config['repeats'] == 2
    assert variant['optim_wrapper'] == 'CPUBFloat16OptimWrapper'
    assert variant['speed_up'] == pytest.approx(
        config['median_ms'] / variant['median_ms'])
    for v in (config, variant):
        assert v['images_per_s'] == pytest.approx(2e3 / v['median_ms'])
        assert v['first_step_s'] > 0 and v['peak_mib'] > 0
    phases = result['phases_ms']
    assert list(phases) == STEP_PHASES
    assert 0 < phases['assignment'] < phases['losses'] < phases['step']
    assert 'loss_cls=' in payload['table']


def test_compile_adds_a_compiled_twin_per_variant(tool, tmp_path,
                                                  keep_threads):
    torch._dynamo.reset()
    bf16 = 'optim_wrapper.type=CPUBFloat16OptimWrapper'
    payload = run(tool, tmp_path, '--task', 'train', '--repeats', '1',
                  '--compare', bf16, '--compile', '--run-steps', '50',
                  '--cfg-options', *tiny_model_options(3),
                  'compile.backend=eager')
    torch._dynamo.reset()
    variants = payload['result']['variants']
    assert list(variants) == [
        'the config', 'the config + compile', bf16, f'{bf16} + compile']
    for name in ('the config', bf16):
        eager, twin = variants[name], variants[f'{name} + compile']
        # The config's compile settings; the eager twin has none.
        assert eager['compile'] is None
        assert twin['compile'] == dict(backend='eager')
        assert twin['speed_up_vs_eager'] == pytest.approx(
            eager['median_ms'] / twin['median_ms'])
        assert twin['run_steps'] == 50
        assert twin['speed_up_vs_eager_with_compile'] > 0
    assert 'pays off after steps' in payload['table']


def test_inference_task(tool, tmp_path, keep_threads):
    payload = run(tool, tmp_path, '--task', 'inference', '--amp',
                  '--cfg-options', *tiny_model_options(80),
                  'model.test_cfg.score_thr=0')
    result = payload['result']
    assert [b['batch_size'] for b in result['batches']] == [1, 2]
    for b in result['batches']:
        assert b['ms_per_image'] == pytest.approx(b['median_ms'] /
                                                  b['batch_size'])
        assert b['images_per_s'] > 0 and b['peak_mib'] > 0
    phases = result['phases_ms']
    assert list(phases) == ['network', 'post_processing', 'other', 'step']
    assert result['post_processing_share'] == pytest.approx(
        phases['post_processing'] / phases['step'])


def test_options_of_another_task_are_refused(tool, tmp_path):
    for args in (['--task', 'inference', '--compare', 'a=1'],
                 ['--task', 'assign', '--compile'],
                 ['--task', 'train', '--run-steps', '5']):
        with pytest.raises(SystemExit) as error:
            run(tool, tmp_path, *args)
        assert error.value.code == 2


def test_a_bad_config_entry_is_a_message(tool, tmp_path):
    with pytest.raises(SystemExit) as error:
        run(tool, tmp_path, '--task', 'train', '--compare',
            'compile.backend=no_such_backend')
    assert 'compile' in str(error.value.code)
