"""tools/analysis/gpu_checks.py.

No GPU here: the GPU plan's commands are checked as text, and the whole
script runs in its CPU dry-run mode (tiny model, 64x64).
"""
import argparse
import json
import os.path as osp
import sys

import pytest
import torch
from tool_helpers import REPO, load_analysis_tool, run_tool

from tood.engine import CUDA_AMP_SETTINGS

load = load_analysis_tool


def test_gpu_plan_measures_r50_at_1333x800_in_three_precisions(tmp_path):
    checks = load('gpu_checks')
    p = checks.plan(dry_run=False)
    planned = checks.checks(argparse.Namespace(dry_run=False), p,
                            str(tmp_path))
    assert [name for name, _, _ in planned] == [
        'train_b2', 'train_b4', 'infer_torch', 'infer_torch_fp16',
        'ddp_nccl', 'ddp_gloo', 'train_b2_compile', 'infer_onnx',
        'train_b4_compile'
    ]
    commands = {name: command for name, _, command in planned}
    command = commands['train_b4_compile']
    assert command[1:3] == [checks.BENCHMARK, checks.CONFIG]
    text = ' '.join(command)
    assert '--device cuda' in text and '--shape 800 1333' in text
    assert '--batch-size 4' in text and '--compile' in text
    assert str(tmp_path / 'train_b4_compile.json') in command
    # The --compare entries parse back into tools/train.py --amp's
    # settings: float16 with a dynamic scale, bfloat16 with none.
    parse = load('benchmark').parse_options
    compare = command[command.index('--compare') + 1:]
    assert [parse(entry) for entry in compare[:2]] == [
        {f'optim_wrapper.{k}': v for k, v in CUDA_AMP_SETTINGS[d].items()}
        for d in ('float16', 'bfloat16')]
    assert compare[2] == '--compile'
    assert '--amp' in commands['infer_torch_fp16']
    assert '--amp' not in commands['infer_torch']
    onnx = commands['infer_onnx']
    assert onnx[1:4] == [checks.BENCHMARK_ONNX, checks.CONFIG, 'none']
    assert ' '.join(onnx).endswith(
        f'--device cuda --shape 800 1333 --repeats 10 --out '
        f'{tmp_path / "infer_onnx.json"}')
    assert '--standalone' in commands['ddp_nccl']


def test_gpu_checks_need_a_gpu_or_dry_run():
    if torch.cuda.is_available():
        pytest.skip('this machine has a GPU')
    with pytest.raises(SystemExit, match='--dry-run'):
        load('gpu_checks').main(['--out', 'unused'])


@pytest.mark.e2e
def test_gpu_checks_dry_run_writes_the_summary(tmp_path):
    # Three checks of the eight (each is a process of its own): a compiled
    # training comparison, DDP and the exported runtimes; the others run
    # the same benchmark.py with other sizes and precisions.
    out = str(tmp_path / 'out')
    proc = run_tool([
        sys.executable,
        osp.join(REPO, 'tools', 'analysis', 'gpu_checks.py'), '--dry-run',
        '--budget', '1200', '--only', 'train_b2_compile', 'ddp_gloo',
        'infer_onnx'
    ], cwd=str(tmp_path), env=dict(OUT=out), timeout=1500)
    assert proc.returncode == 0, proc.stdout[-5000:]
    with open(osp.join(out, 'summary.json')) as f:
        summary = json.load(f)
    entries = summary['checks']
    assert {k: v['status'] for k, v in entries.items()} == {
        name: 'ok' for name in ('ddp_gloo', 'train_b2_compile', 'infer_onnx')
    }, {k: v.get('log_tail', v['status']) for k, v in entries.items()}
    assert entries['ddp_gloo']['result']['weights_agree']
    assert 'the config + compile' in entries['train_b2_compile']['result'][
        'result']['variants']
    (onnx, ) = entries['infer_onnx']['result']['results']
    # The tests extra installs OpenVINO; TensorRT needs a GPU and is
    # reported as skipped.
    assert set(onnx['runtimes']) == {'PyTorch', 'ONNX Runtime', 'OpenVINO'}
    with open(osp.join(out, 'summary.md')) as f:
        text = f.read()
    # Each check's own table, in a fence of its own.
    for name in entries:
        assert f'## {name}\n\n```text\n' in text
        assert entries[name]['result']['table'].strip() in text
    assert text.count('```') == 6
    # Each check kept its log.
    assert osp.isfile(osp.join(out, 'train_b2_compile.log'))


def test_only_names_known_checks():
    with pytest.raises(SystemExit, match='no check named train_b3'):
        load('gpu_checks').main(['--dry-run', '--only', 'train_b3'])


def test_markdown_shows_a_failed_check_by_its_log():
    summary = dict(plan=dict(shape=(64, 64)), started='now', dry_run=True,
                   machine={}, checks=dict(
                       a=dict(status='ok', seconds=1.0,
                              result=dict(table='x  y\n1  2')),
                       b=dict(status='failed (exit 1)', seconds=2.0,
                              log_tail='Traceback: boom\n'),
                       c=dict(status='skipped: 600 s budget spent')))
    text = load('gpu_checks').markdown(summary)
    assert '| a | ok | 1 |' in text and '| c | skipped: 600 s budget ' \
        'spent | 0 |' in text
    assert '## a\n\n```text\nx  y\n1  2\n```' in text
    assert '## b\n\n```text\nTraceback: boom\n```' in text
    assert '## c' not in text


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
