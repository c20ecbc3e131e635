"""tools/analysis/benchmark.py --compile and tools/analysis/gpu_checks.py.

No GPU here: the GPU plan's commands are checked as text, and the whole
script runs in its CPU dry-run mode (tiny model, 64x64).
"""
import argparse
import json
import os.path as osp
import sys

import pytest
import torch
import torch._dynamo
from tool_helpers import (R50_1X, REPO, load_analysis_tool, run_tool,
                          tiny_model_options)

from tood.engine import CUDA_AMP_SETTINGS


load = load_analysis_tool


@pytest.mark.e2e
def test_benchmark_compile_adds_a_compiled_twin_per_variant(
        tmp_path, keep_threads):
    torch._dynamo.reset()
    out = str(tmp_path / 'bench.json')
    load('benchmark').main([
        R50_1X, '--task', 'train', '--shape', '64', '64', '--repeats', '1',
        '--device', 'cpu', '--threads', '1', '--out', out, '--compare',
        'optim_wrapper.type=CPUBFloat16OptimWrapper', '--compile',
        '--run-steps', '50', '--cfg-options', *tiny_model_options(3),
        'compile.backend=eager'
    ])
    torch._dynamo.reset()
    with open(out) as f:
        payload = json.load(f)
    variants = payload['result']['variants']
    bf16 = 'optim_wrapper.type=CPUBFloat16OptimWrapper'
    assert list(variants) == [
        'the config', 'the config + compile', bf16, f'{bf16} + compile'
    ]
    assert payload['settings']['compile'] is True
    for name, v in variants.items():
        assert v['first_step_s'] > 0 and v['peak_mib'] > 0
        if name.endswith(' + compile'):
            # The config's compile settings; the eager twin has none.
            assert v['compile'] == dict(backend='eager')
            eager = variants[name[:-len(' + compile')]]
            assert eager['compile'] is None
            assert v['speed_up_vs_eager'] == pytest.approx(
                eager['median_ms'] / v['median_ms'])
            assert v['run_steps'] == 50
            assert v['speed_up_vs_eager_with_compile'] > 0
    assert variants[f'{bf16} + compile'][
        'optim_wrapper'] == 'CPUBFloat16OptimWrapper'


def test_gpu_plan_measures_r50_at_1333x800_in_three_precisions(tmp_path):
    checks = load('gpu_checks')
    p = checks.plan(dry_run=False)
    assert p['shape'] == (800, 1333) and p['batch_sizes'] == (2, 4)
    command = checks.train_command(p, 'x.json', 4, compiled=True)
    assert command[2] == checks.CONFIG
    text = ' '.join(command)
    assert '--device cuda' in text and '--shape 800 1333' in text
    assert '--batch-size 4' in text and '--compile' in text
    assert 'model.backbone.init_cfg=None' in command
    # The --compare entries parse back into tools/train.py --amp's
    # settings: float16 with a dynamic scale, bfloat16 with none.
    parse = load('benchmark').parse_options
    compare = command[command.index('--compare') + 1:]
    parsed = [parse(entry) for entry in compare[:2]]
    assert parsed == [{f'optim_wrapper.{k}': v
                       for k, v in CUDA_AMP_SETTINGS[dtype].items()}
                      for dtype in ('float16', 'bfloat16')]
    names = [name for name, _, _ in checks.checks(
        argparse.Namespace(dry_run=False), p, str(tmp_path))]
    assert names == [
        'train_b2', 'train_b4', 'infer_torch', 'infer_torch_fp16',
        'ddp_nccl', 'ddp_gloo', 'train_b2_compile', 'infer_onnxruntime',
        'train_b4_compile'
    ]


def test_gpu_checks_need_a_gpu_or_dry_run():
    if torch.cuda.is_available():
        pytest.skip('this machine has a GPU')
    with pytest.raises(SystemExit, match='--dry-run'):
        load('gpu_checks').main(['--out', 'unused'])


@pytest.mark.e2e
def test_gpu_checks_dry_run_writes_the_summary(tmp_path):
    # Two checks of the eight (each is a process of its own): a compiled
    # training comparison and DDP; the others run the same benchmark.py
    # commands with other sizes and precisions, and ONNX Runtime's session
    # is the one tests/deployment checks.
    out = str(tmp_path / 'out')
    proc = run_tool([
        sys.executable,
        osp.join(REPO, 'tools', 'analysis', 'gpu_checks.py'), '--dry-run',
        '--budget', '1200', '--only', 'train_b2_compile', 'ddp_gloo'
    ], cwd=str(tmp_path), env=dict(OUT=out), timeout=1500)
    assert proc.returncode == 0, proc.stdout[-5000:]
    with open(osp.join(out, 'summary.json')) as f:
        summary = json.load(f)
    statuses = {k: v['status'] for k, v in summary['checks'].items()}
    assert statuses == {
        name: 'ok'
        for name in ('ddp_gloo', 'train_b2_compile')
    }, {k: v.get('log_tail', v['status'])
        for k, v in summary['checks'].items()}
    assert summary['checks']['ddp_gloo']['result']['weights_agree']
    compiled = summary['checks']['train_b2_compile']['result']['result'][
        'variants']
    assert 'the config + compile' in compiled
    with open(osp.join(out, 'summary.md')) as f:
        text = f.read()
    for heading in ('## Training', '## DDP, two processes on one device'):
        assert heading in text
    assert '| 2 | float32 + compile |' in text
    # Each check kept its log.
    assert osp.isfile(osp.join(out, 'train_b2_compile.log'))


def test_only_names_known_checks():
    with pytest.raises(SystemExit, match='no check named train_b3'):
        load('gpu_checks').main(['--dry-run', '--only', 'train_b3'])


def test_a_failing_check_costs_only_itself(tmp_path):
    checks = load('gpu_checks')
    entry = checks.run_check(
        'boom', [sys.executable, '-c', 'import sys; sys.exit(3)'],
        str(tmp_path), timeout=60)
    assert entry['status'] == 'failed (exit 3)' and 'log_tail' in entry
    entry = checks.run_check(
        'hang', [sys.executable, '-c', 'import time; time.sleep(60)'],
        str(tmp_path), timeout=1)
    assert entry['status'] == 'timed out after 1 s'
