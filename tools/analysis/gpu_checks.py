"""Every GPU check of this project, in one command, in a few minutes on one
GPU; a JSON and a Markdown summary under ``$OUT``.

    pip install -e '.[tests]'
    OUT=work_dirs/gpu_checks python tools/analysis/gpu_checks.py \\
        [--budget 600]
    python tools/analysis/gpu_checks.py --dry-run   # CPU, tiny: the script
    python tools/analysis/gpu_checks.py --only ddp_nccl   # one check again

From a fresh checkout: nothing is downloaded (seed-0 weights, synthetic
inputs). The checks, most informative first:

1. ``train_b2``, ``train_b4``: TOOD R-50 (``tood_r50_fpn_1x_coco.py``)
   training steps at 800x1333, batch 2 and 4: images/s and peak memory in
   float32, float16 with a dynamic loss scale (``--amp``) and bfloat16
   (``--amp bfloat16``), timed in turns (``benchmark.py --compare``);
2. ``infer_torch``, ``infer_torch_fp16``: inference at batch 1, PyTorch
   eager, float32 and float16 autocast (``benchmark.py --task
   inference``);
3. ``ddp_nccl``: one training step of two processes sharing the GPU over
   nccl, and that both end with the same weights; NCCL may refuse two
   ranks on one device, in which case ``ddp_gloo`` runs the same step over
   gloo so that the DDP path is still checked;
4. ``train_b2_compile``: check 1 at batch 2 with a compiled twin of every
   precision (``--compile``): compile time, speed-up, images/s, memory;
5. ``infer_onnx``: the whole detector exported to ONNX and run by every
   runtime of ``tools/deployment/benchmark_onnx.py`` on the GPU (ONNX
   Runtime's CUDA provider, with ``onnxruntime-gpu``), against PyTorch;
6. ``train_b4_compile``: check 4 at batch 4.

Each check runs in its own process with a time limit, so one that fails,
hangs or runs out of memory costs only itself; once ``--budget`` seconds
are spent, the checks left are listed as skipped. Each check's log and
JSON are kept under ``$OUT`` beside ``summary.json`` and ``summary.md``.

``--dry-run`` runs the same checks on the CPU with a tiny model at 64x64,
batch 1 and 2, bfloat16 on the CPU instead of the CUDA precisions, the
'eager' compile backend and gloo: it checks the script, not the GPU.
"""
import argparse
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time
from typing import List, Optional, Tuple

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import build_optim_wrapper

from tood.analysis.benchmarking import (check_finite, detection_batch,
                                        enter_task_aligned_phase,
                                        machine_info, time_first)
from tood.apis import init_detector

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.abspath(osp.join(HERE, '..', '..'))
CONFIG = osp.join(REPO, 'configs', 'tood', 'tood_r50_fpn_1x_coco.py')
BENCHMARK = osp.join(HERE, 'benchmark.py')
BENCHMARK_ONNX = osp.join(REPO, 'tools', 'deployment', 'benchmark_onnx.py')
# A ResNet-18 TOOD with 16 channels, for --dry-run.
TINY_MODEL = {
    'model.backbone.depth': 18, 'model.neck.out_channels': 16,
    'model.neck.in_channels': [64, 128, 256, 512],
    'model.bbox_head.in_channels': 16, 'model.bbox_head.feat_channels': 16,
    'model.bbox_head.stacked_convs': 2,
    'model.bbox_head.norm_cfg.num_groups': 4}
# The longest each check may take, in seconds: compiling R-50 for training
# takes minutes per precision.
TIME_LIMITS = dict(train=240, infer=180, ddp=180, compile=600, onnx=360)
# A check starts only with this much of the budget left.
MIN_CHECK_S = 45


def plan(dry_run: bool) -> dict:
    """The sizes and settings of the checks: the GPU's, or tiny ones on the
    CPU for ``--dry-run``. ``precisions``: the ``optim_wrapper`` settings
    compared with float32, those of ``tools/train.py --amp [DTYPE]``."""
    from tood.engine import CUDA_AMP_SETTINGS
    if dry_run:
        return dict(device='cpu', shape=(64, 64), batch_sizes=(1, 2),
                    model_options=TINY_MODEL, repeats=1, min_run_time=0.0,
                    precisions=[dict(type='CPUBFloat16OptimWrapper')],
                    compile_options={'compile.backend': 'eager'},
                    ddp_backends=('gloo', ))
    return dict(device='cuda', shape=(800, 1333), batch_sizes=(2, 4),
                model_options={}, repeats=10, min_run_time=3.0,
                precisions=[CUDA_AMP_SETTINGS[dtype]
                            for dtype in ('float16', 'bfloat16')],
                compile_options={}, ddp_backends=('nccl', 'gloo'))


def cfg_options(options: dict) -> List[str]:
    """``--cfg-options`` and its words (lists without spaces, so that a
    ``--compare`` entry splits into words correctly); none for none."""
    words = [f'{k}={str(v).replace(" ", "")}' for k, v in options.items()]
    return ['--cfg-options', *words] if words else []


def variant(settings: dict) -> str:
    """The ``--compare`` entry that sets ``optim_wrapper`` to
    ``settings``."""
    return ' '.join(cfg_options(
        {f'optim_wrapper.{k}': v for k, v in settings.items()})[1:])


def checks(args: argparse.Namespace, p: dict,
           out_dir: str) -> List[Tuple[str, float, List[str]]]:
    """(name, time limit in seconds, command) of each check, in the order
    they run."""
    def tool(script: str, name: str, *words: str,
             options: Optional[dict] = None) -> List[str]:
        return [sys.executable, script, CONFIG, *words, '--device',
                p['device'], '--shape', *map(str, p['shape']), '--repeats',
                str(p['repeats']), '--out', osp.join(out_dir, f'{name}.json'),
                *cfg_options({**p['model_options'], **(options or {})})]

    def train(batch_size: int, compiled: bool) -> tuple:
        name = f'train_b{batch_size}' + ('_compile' if compiled else '')
        return (name, TIME_LIMITS['compile' if compiled else 'train'], tool(
            BENCHMARK, name, '--task', 'train', '--batch-size',
            str(batch_size), '--compare',
            *map(variant, p['precisions']),
            *(['--compile'] if compiled else []),
            options=p['compile_options'] if compiled else None))

    def infer(name: str, *amp: str) -> tuple:
        return (name, TIME_LIMITS['infer'], tool(
            BENCHMARK, name, '--task', 'inference', '--batch-size', '1',
            '--min-run-time', str(p['min_run_time']), *amp))

    def ddp(backend: str) -> tuple:
        # This script's own check, in two processes on a free port.
        return (f'ddp_{backend}', TIME_LIMITS['ddp'], [
            sys.executable, '-m', 'torch.distributed.run', '--standalone',
            '--nproc_per_node=2', osp.abspath(__file__), '--check', backend,
            '--result', osp.join(out_dir, f'ddp_{backend}.json'),
            *(['--dry-run'] if args.dry_run else [])])

    small, large = p['batch_sizes']
    return [
        train(small, False), train(large, False), infer('infer_torch'),
        infer('infer_torch_fp16' if p['device'] == 'cuda' else
              'infer_torch_bf16', '--amp'),
        *map(ddp, p['ddp_backends']), train(small, True),
        ('infer_onnx', TIME_LIMITS['onnx'],
         tool(BENCHMARK_ONNX, 'infer_onnx', 'none')),
        train(large, True),
    ]


def ddp_check(p: dict, backend: str, result_path: str) -> None:
    """One process of the two-process DDP check: three training steps on
    one device; rank 0 writes the step times and whether the ranks'
    weights agree afterwards."""
    dist.init_process_group(backend)
    rank = dist.get_rank()
    on_cuda = p['device'] == 'cuda'
    if on_cuda:
        torch.cuda.set_device(0)  # both ranks on the one GPU
    device = torch.device('cuda', 0) if on_cuda else torch.device('cpu')
    model = init_detector(CONFIG, None, str(device), p['model_options'])
    model.train()
    enter_task_aligned_phase(model)
    ddp = MMDistributedDataParallel(
        module=model, device_ids=[0] if on_cuda else None)
    optim_wrapper = build_optim_wrapper(ddp, model.cfg.optim_wrapper)
    # Each rank its own images, as a sampler would give them.
    data = detection_batch(p['batch_sizes'][0], p['shape'], 8,
                           model.bbox_head.num_classes, seed=rank)
    times = [time_first(lambda: check_finite(ddp.train_step(
        data, optim_wrapper)), device) for _ in range(3)]
    # Averaged gradients give every rank the same update.
    total = torch.stack([q.detach().double().sum()
                         for q in model.parameters()]).sum().reshape(1)
    gathered = [torch.zeros_like(total) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, total)
    agree = all(torch.equal(g, gathered[0]) for g in gathered)
    if rank == 0:
        with open(result_path, 'w') as f:
            json.dump(dict(
                backend=backend, world_size=dist.get_world_size(),
                device=str(device), step_ms=[1e3 * t for t in times],
                weights_agree=agree,
                table=f'{backend}, {device}: step ms ' + ', '.join(
                    f'{1e3 * t:.0f}' for t in times) +
                f'; weights agree across ranks: {agree}'), f, indent=2)
    dist.destroy_process_group()


def run_check(name: str, command: List[str], out_dir: str,
              timeout: float) -> dict:
    """Run one check's command with a time limit; its output goes to
    ``<name>.log`` and its result is ``<name>.json``."""
    log_path = osp.join(out_dir, f'{name}.log')
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        q for q in (REPO, env.get('PYTHONPATH')) if q)
    start = time.perf_counter()
    with open(log_path, 'w') as log:
        try:
            code = subprocess.run(command, cwd=REPO, env=env, stdout=log,
                                  stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode
            status = 'ok' if code == 0 else f'failed (exit {code})'
        except subprocess.TimeoutExpired:
            status = f'timed out after {timeout:.0f} s'
    entry = dict(status=status, seconds=time.perf_counter() - start,
                 command=' '.join(map(shlex.quote, command)), log=log_path)
    result_path = osp.join(out_dir, f'{name}.json')
    if status == 'ok' and osp.isfile(result_path):
        with open(result_path) as f:
            entry['result'] = json.load(f)
    elif status != 'ok':
        with open(log_path) as f:
            entry['log_tail'] = f.read()[-2000:]
    return entry


def run_all(args: argparse.Namespace) -> dict:
    p = plan(args.dry_run)
    out_dir = osp.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    deadline = time.perf_counter() + args.budget
    summary = dict(plan=p, dry_run=args.dry_run, budget_s=args.budget,
                   started=time.strftime('%Y-%m-%d %H:%M:%S'),
                   machine=machine_info(torch.device(p['device'])),
                   checks={})
    for name, limit, command in checks(args, p, out_dir):
        if args.only and name not in args.only:
            continue
        if name == 'ddp_gloo' and summary['checks'].get(
                'ddp_nccl', {}).get('status') == 'ok':
            continue  # gloo only stands in where nccl refused
        left = deadline - time.perf_counter()
        if left < MIN_CHECK_S:
            summary['checks'][name] = dict(
                status=f'skipped: {args.budget:.0f} s budget spent')
        else:
            print(f'[gpu_checks] {name} (up to {min(limit, left):.0f} s)',
                  flush=True)
            entry = run_check(name, command, out_dir, min(limit, left))
            summary['checks'][name] = entry
            print(f'[gpu_checks] {name}: {entry["status"]} in '
                  f'{entry["seconds"]:.0f} s', flush=True)
        # Written after every check: a session cut short keeps the rest.
        with open(osp.join(out_dir, 'summary.json'), 'w') as f:
            json.dump(summary, f, indent=2)
        with open(osp.join(out_dir, 'summary.md'), 'w') as f:
            f.write(markdown(summary))
    return summary


def markdown(summary: dict) -> str:
    """The summary in Markdown: each check's status and the table its tool
    printed (``table`` in its JSON), or the end of its log."""
    h, w = summary['plan']['shape']
    lines = [
        f'# GPU checks ({summary["started"]})', '',
        f'Machine: {json.dumps(summary["machine"])}. TOOD R-50 '
        f'(`tood_r50_fpn_1x_coco.py`, seed-0 weights) at {h}x{w}'
        f'{", dry run (CPU, tiny model)" if summary["dry_run"] else ""}.',
        '', '| check | status | seconds |', '| --- | --- | --- |']
    lines += [f'| {n} | {e["status"]} | {e.get("seconds", 0):.0f} |'
              for n, e in summary['checks'].items()]
    for name, entry in summary['checks'].items():
        text = entry.get('result', {}).get('table') or entry.get('log_tail')
        if text:
            lines += ['', f'## {name}', '', '```text', text.strip(), '```']
    return '\n'.join(lines) + '\n'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Every GPU check of this project in one run')
    parser.add_argument(
        '--out',
        default=os.environ.get('OUT') or osp.join('work_dirs', 'gpu_checks'),
        help='folder for summary.json, summary.md and the checks\' logs '
        '(default: $OUT, else work_dirs/gpu_checks)')
    parser.add_argument('--budget', type=float, default=600.0,
                        help='seconds after which no check starts')
    parser.add_argument('--only', nargs='+', metavar='CHECK',
                        help='run only these checks (train_b2, ...)')
    parser.add_argument('--dry-run', action='store_true',
                        help='on the CPU, tiny: checks this script')
    # The DDP check's processes (checks() starts them).
    parser.add_argument('--check', help=argparse.SUPPRESS)
    parser.add_argument('--result', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.check:
        ddp_check(plan(args.dry_run), args.check, args.result)
        return
    known = [name for name, _, _ in checks(args, plan(args.dry_run), '')]
    unknown = [name for name in args.only or [] if name not in known]
    if unknown:
        sys.exit(f'--only: no check named {", ".join(unknown)}; the checks '
                 f'are {", ".join(known)}')
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit('no CUDA device: run on a GPU machine, or use --dry-run to '
                 'check the script on the CPU')
    print(markdown(run_all(args)))  # also in summary.md beside the json


if __name__ == '__main__':
    main()
