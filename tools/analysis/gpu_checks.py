"""Every GPU check of this project, in one command, in a few minutes on one
GPU; a JSON and a Markdown summary under ``$OUT``.

    pip install -e '.[tests]'
    OUT=work_dirs/gpu_checks python tools/analysis/gpu_checks.py \\
        [--budget 600]
    python tools/analysis/gpu_checks.py --dry-run   # CPU, tiny: the script
    python tools/analysis/gpu_checks.py --only ddp_nccl   # one check again

From a fresh checkout: nothing is downloaded (the backbone starts from
random weights, ``model.backbone.init_cfg=None``, and every input is
synthetic). The checks, most informative first:

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
5. ``infer_onnxruntime``: the whole detector exported to ONNX
   (``tood.deployment``) and run by ONNX Runtime's CUDA provider at batch
   1, when the installed onnxruntime has it (``onnxruntime-gpu``);
6. ``train_b4_compile``: check 4 at batch 4.

Each check runs in its own process with a time limit, so one that fails,
hangs or runs out of memory costs only itself; once ``--budget`` seconds
are spent, the checks left are listed as skipped. Each check's log and
JSON are kept under ``$OUT`` beside ``summary.json`` and ``summary.md``.

``--dry-run`` runs the same checks on the CPU with a tiny model at 64x64,
batch 1 and 2, bfloat16 on the CPU instead of the CUDA precisions, the
'eager' compile backend, ONNX Runtime's CPU provider and gloo: it checks
the script, not the GPU.
"""
import argparse
import json
import os
import os.path as osp
import shlex
import socket
import subprocess
import sys
import time
from typing import Callable, List, Tuple

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.abspath(osp.join(HERE, '..', '..'))
CONFIG = osp.join(REPO, 'configs', 'tood', 'tood_r50_fpn_1x_coco.py')
BENCHMARK = osp.join(HERE, 'benchmark.py')
# No downloads: the machines these checks run on may have no network.
NO_DOWNLOAD = {'model.backbone.init_cfg': None}
# A ResNet-18 TOOD with 16 channels, for --dry-run.
TINY_MODEL = {
    'model.backbone.depth': 18,
    'model.neck.in_channels': [64, 128, 256, 512],
    'model.neck.out_channels': 16,
    'model.bbox_head.in_channels': 16,
    'model.bbox_head.feat_channels': 16,
    'model.bbox_head.stacked_convs': 2,
    'model.bbox_head.norm_cfg.num_groups': 4,
}


def plan(dry_run: bool) -> dict:
    """The sizes and settings of the checks: the GPU's, or tiny ones on the
    CPU for ``--dry-run``."""
    from tood.engine import CUDA_AMP_SETTINGS
    if dry_run:
        return dict(
            device='cpu',
            shape=(64, 64),
            batch_sizes=(1, 2),
            model_options={**NO_DOWNLOAD, **TINY_MODEL},
            precisions={
                'bfloat16 (CPU)':
                dict(type='CPUBFloat16OptimWrapper'),
            },
            compile_options={'compile.backend': 'eager'},
            repeats=1,
            min_run_time=0.0,
            inference_steps=2,
            ort_provider='CPUExecutionProvider',
            ddp_backends=('gloo', ))
    return dict(
        device='cuda',
        shape=(800, 1333),
        batch_sizes=(2, 4),
        model_options=dict(NO_DOWNLOAD),
        precisions={
            'float16 (--amp)': CUDA_AMP_SETTINGS['float16'],
            'bfloat16 (--amp bfloat16)': CUDA_AMP_SETTINGS['bfloat16'],
        },
        compile_options={},
        repeats=10,
        min_run_time=3.0,
        inference_steps=30,
        ort_provider='CUDAExecutionProvider',
        ddp_backends=('nccl', 'gloo'))


def cfg_options(options: dict) -> List[str]:
    """A dict of config entries as the words of ``--cfg-options`` (lists
    without spaces, so that a ``--compare`` entry splits into words
    correctly)."""
    return [
        f'{key}={str(value).replace(" ", "")}'
        for key, value in options.items()
    ]


def variant(settings: dict) -> str:
    """One ``--compare`` entry that sets ``optim_wrapper`` to
    ``settings``."""
    return ' '.join(
        cfg_options({f'optim_wrapper.{k}': v
                     for k, v in settings.items()}))


def benchmark_command(p: dict, out_json: str, *args: str) -> List[str]:
    return [
        sys.executable, BENCHMARK, CONFIG, '--device', p['device'],
        '--shape', *map(str, p['shape']), '--out', out_json, *args,
        '--cfg-options', *cfg_options(p['model_options'])
    ]


def train_command(p: dict, out_json: str, batch_size: int,
                  compiled: bool) -> List[str]:
    """benchmark.py --compare: float32 (the config) and each precision, in
    turns; with ``compiled`` a compiled twin of each."""
    args = [
        '--task', 'train', '--batch-size',
        str(batch_size), '--repeats',
        str(p['repeats']), '--compare',
        *[variant(s) for s in p['precisions'].values()]
    ]
    if compiled:
        args.append('--compile')
    command = benchmark_command(p, out_json, *args)
    if compiled:
        command += cfg_options(p['compile_options'])
    return command


def inference_command(p: dict, out_json: str, amp: bool) -> List[str]:
    args = [
        '--task', 'inference', '--batch-size', '1', '--min-run-time',
        str(p['min_run_time']), '--repeats',
        str(p['repeats'])
    ]
    if amp:
        args.append('--amp')
    return benchmark_command(p, out_json, *args)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def inner_command(p_args: argparse.Namespace, check: str,
                  out_json: str) -> List[str]:
    """This script, running one of its own checks (``--check``)."""
    command = [osp.abspath(__file__), '--check', check, '--result', out_json]
    if p_args.dry_run:
        command.append('--dry-run')
    return command


def ddp_command(p_args: argparse.Namespace, backend: str,
                out_json: str) -> List[str]:
    return [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
        f'--master_port={free_port()}',
        *inner_command(p_args, f'ddp_{backend}', out_json)
    ]


# ---------------------------------------------------------------------- #
# The checks this script runs itself, in their own processes
# ---------------------------------------------------------------------- #
def build_training(p: dict, device) -> tuple:
    """The plan's TOOD on ``device`` and its config, the head after the
    ATSS warm-up (task-aligned assignment, the steady state)."""
    sys.path.insert(0, HERE)
    from benchmarking import enter_task_aligned_phase

    from tood.engine import load_config
    from tood.registry import MODELS
    from tood.utils import register_all_modules
    register_all_modules()
    cfg = load_config(CONFIG, p['model_options'])
    model = MODELS.build(cfg.model).to(device)
    model.init_weights()
    enter_task_aligned_phase(model)
    return model, cfg


def ddp_check(p: dict, backend: str, result_path: str) -> None:
    """One process of the two-process DDP check (run by torchrun): three
    training steps on one device; rank 0 writes the step time and whether
    the ranks' weights agree afterwards."""
    import torch
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    from mmengine.optim import build_optim_wrapper
    sys.path.insert(0, HERE)
    from benchmarking import check_finite, detection_batch, synchronize

    dist.init_process_group(backend)
    rank = dist.get_rank()
    on_cuda = p['device'] == 'cuda'
    device = torch.device('cuda', 0) if on_cuda else torch.device('cpu')
    if on_cuda:
        # Both ranks on the one GPU, the point of this check.
        torch.cuda.set_device(0)
    torch.manual_seed(0)
    model, cfg = build_training(p, device)
    ddp = MMDistributedDataParallel(
        module=model, device_ids=[0] if on_cuda else None)
    optim_wrapper = build_optim_wrapper(ddp, cfg.optim_wrapper)
    # Each rank its own images, as a sampler would give them.
    data = detection_batch(p['batch_sizes'][0], p['shape'], 8,
                           model.bbox_head.num_classes, seed=rank)
    times = []
    for _ in range(3):
        synchronize(device)
        start = time.perf_counter()
        check_finite(ddp.train_step(data, optim_wrapper))
        synchronize(device)
        times.append(time.perf_counter() - start)
    # Averaged gradients give every rank the same update.
    total = torch.stack([q.detach().double().sum()
                         for q in model.parameters()]).sum().reshape(1)
    gathered = [torch.zeros_like(total) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, total)
    if rank == 0:
        with open(result_path, 'w') as f:
            json.dump(
                dict(
                    backend=backend,
                    world_size=dist.get_world_size(),
                    device=str(device),
                    step_ms=[1e3 * t for t in times],
                    weights_agree=bool(
                        all(torch.equal(g, gathered[0]) for g in gathered))),
                f,
                indent=2)
    dist.destroy_process_group()


def onnxruntime_check(p: dict, result_path: str) -> None:
    """The whole detector exported with NMS and run by ONNX Runtime with
    the plan's provider at batch 1; skipped without that provider."""
    import numpy as np
    import onnxruntime as ort

    from tood.deployment import export_config
    from tood.deployment.onnx_export import example_inputs
    provider = p['ort_provider']
    available = ort.get_available_providers()
    if provider not in available:
        with open(result_path, 'w') as f:
            json.dump(
                dict(
                    skipped=f'onnxruntime {ort.__version__} has no '
                    f'{provider} (it has {", ".join(available)}); '
                    'pip install onnxruntime-gpu for it'), f)
        return
    onnx_file = osp.join(osp.dirname(result_path), 'tood_r50.onnx')
    start = time.perf_counter()
    export_config(CONFIG, None, onnx_file, shape=p['shape'],
                  cfg_options=p['model_options'])
    export_s = time.perf_counter() - start
    session = ort.InferenceSession(onnx_file, providers=[provider])
    feed = {
        i.name: t.numpy()
        for i, t in zip(session.get_inputs(), example_inputs(p['shape']))
    }
    for _ in range(3):  # warm-up: memory arenas, cuDNN algorithm search
        session.run(None, feed)
    times = []
    for _ in range(p['inference_steps']):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    with open(result_path, 'w') as f:
        json.dump(
            dict(
                provider=provider,
                providers_used=session.get_providers(),
                onnxruntime=ort.__version__,
                export_s=export_s,
                median_ms=1e3 * median,
                images_per_s=1.0 / median), f, indent=2)


# ---------------------------------------------------------------------- #
# Running the checks
# ---------------------------------------------------------------------- #
def run_check(name: str, command: List[str], out_dir: str,
              timeout: float) -> dict:
    """Run one check's command with a time limit; its output goes to
    ``<name>.log`` and its result is ``<name>.json``."""
    log_path = osp.join(out_dir, f'{name}.log')
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        q for q in (REPO, env.get('PYTHONPATH')) if q)
    if command[0].endswith('.py'):
        command = [sys.executable] + command
    start = time.perf_counter()
    with open(log_path, 'w') as log:
        try:
            proc = subprocess.run(
                command,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout)
            status = 'ok' if proc.returncode == 0 else \
                f'failed (exit {proc.returncode})'
        except subprocess.TimeoutExpired:
            status = f'timed out after {timeout:.0f} s'
    entry = dict(
        status=status,
        seconds=time.perf_counter() - start,
        command=' '.join(map(shlex.quote, command)),
        log=log_path)
    result_path = osp.join(out_dir, f'{name}.json')
    if status == 'ok' and osp.isfile(result_path):
        with open(result_path) as f:
            entry['result'] = json.load(f)
        if 'skipped' in entry['result']:
            entry['status'] = 'skipped: ' + entry['result']['skipped']
    elif status != 'ok':
        with open(log_path) as f:
            entry['log_tail'] = f.read()[-2000:]
    return entry


# The longest each check may take, in seconds: compiling R-50 for training
# takes minutes per precision.
TIME_LIMITS = dict(train=240, infer=180, ddp=180, compile=600, onnx=360)
INFERENCE_LABELS = dict(
    infer_torch='PyTorch eager, float32',
    infer_torch_fp16='PyTorch eager, float16 autocast (--amp)',
    infer_torch_bf16='PyTorch eager, bfloat16 autocast (--amp)')


def checks(args: argparse.Namespace, p: dict,
           out_dir: str) -> List[Tuple[str, float, Callable[[], list]]]:
    """(name, time limit, command builder) in the order they run; a
    builder is called only when its turn comes."""
    def path(name: str) -> str:
        return osp.join(out_dir, f'{name}.json')

    def train(batch_size: int, compiled: bool) -> tuple:
        name = f'train_b{batch_size}' + ('_compile' if compiled else '')
        return (name, TIME_LIMITS['compile' if compiled else 'train'],
                lambda: train_command(p, path(name), batch_size, compiled))

    amp_inference = ('infer_torch_fp16'
                     if p['device'] == 'cuda' else 'infer_torch_bf16')
    small, large = p['batch_sizes']
    return [
        train(small, False),
        train(large, False),
        ('infer_torch', TIME_LIMITS['infer'],
         lambda: inference_command(p, path('infer_torch'), False)),
        (amp_inference, TIME_LIMITS['infer'],
         lambda: inference_command(p, path(amp_inference), True)),
        *[(f'ddp_{backend}', TIME_LIMITS['ddp'],
           lambda backend=backend: ddp_command(args, backend,
                                               path(f'ddp_{backend}')))
          for backend in p['ddp_backends']],
        train(small, True),
        ('infer_onnxruntime', TIME_LIMITS['onnx'],
         lambda: inner_command(args, 'onnxruntime',
                               path('infer_onnxruntime'))),
        train(large, True),
    ]


def run_all(args: argparse.Namespace) -> dict:
    p = plan(args.dry_run)
    out_dir = osp.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    deadline = time.perf_counter() + args.budget
    summary = dict(
        plan=p,
        dry_run=args.dry_run,
        budget_s=args.budget,
        started=time.strftime('%Y-%m-%d %H:%M:%S'),
        machine=machine(p['device']),
        checks={})
    for name, limit, build in checks(args, p, out_dir):
        if args.only and name not in args.only:
            continue
        if name == 'ddp_gloo' and summary['checks'].get(
                'ddp_nccl', {}).get('status') == 'ok':
            # gloo only stands in where nccl refused.
            continue
        left = deadline - time.perf_counter()
        if left < args.min_check_time:
            summary['checks'][name] = dict(
                status=f'skipped: {args.budget:.0f} s budget spent')
        else:
            limit = min(limit, left)
            print(f'[gpu_checks] {name} (up to {limit:.0f} s) ...',
                  flush=True)
            summary['checks'][name] = run_check(name, build(), out_dir,
                                                limit)
            print(f'[gpu_checks] {name}: {summary["checks"][name]["status"]}'
                  f' in {summary["checks"][name]["seconds"]:.0f} s',
                  flush=True)
        # Written after every check: a session cut short keeps the rest.
        write_summary(summary, out_dir)
    return summary


def machine(device: str) -> dict:
    import torch
    info = dict(torch=torch.__version__, cuda=torch.version.cuda,
                cpu_count=os.cpu_count())
    if device == 'cuda' and torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name(0)
        info['gpu_memory_gib'] = torch.cuda.get_device_properties(
            0).total_memory / 1024**3
    return info


def markdown(summary: dict) -> str:
    """The summary as Markdown tables, for docs/benchmarks.md."""
    p = summary['plan']
    h, w = p['shape']
    lines = [
        f'# GPU checks ({summary["started"]})', '',
        f'Machine: {json.dumps(summary["machine"])}. '
        f'TOOD R-50 (`tood_r50_fpn_1x_coco.py`, random weights) at '
        f'{h}x{w}{", dry run (CPU, tiny model)" if summary["dry_run"] else ""}'
        '.', '', '| check | status | seconds |', '| --- | --- | --- |'
    ]
    for name, entry in summary['checks'].items():
        lines.append(f'| {name} | {entry["status"]} | '
                     f'{entry.get("seconds", 0):.0f} |')
    lines += [
        '', '## Training', '',
        '| batch | variant | images/s | step ms (median) | peak MiB | '
        'first step s |', '| --- | --- | --- | --- | --- | --- |'
    ]
    names = {'the config': 'float32'}
    names.update({variant(s): n for n, s in p['precisions'].items()})
    for name, entry in summary['checks'].items():
        if not name.startswith('train_') or 'result' not in entry:
            continue
        batch = entry['result']['settings']['batch_size']
        for label, r in entry['result']['result']['variants'].items():
            base = label[:-len(' + compile')] if label.endswith(
                ' + compile') else label
            shown = names.get(base, base) + (
                ' + compile' if base != label else '')
            lines.append(
                f'| {batch} | {shown} | {r["images_per_s"]:.2f} | '
                f'{r["median_ms"]:.1f} | {r["peak_mib"]:.0f} | '
                f'{r["first_step_s"]:.1f} |')
    lines += [
        '', '## Inference, batch 1', '', '| runtime | images/s | ms |',
        '| --- | --- | --- |'
    ]
    for name, entry in summary['checks'].items():
        result = entry.get('result')
        if not result:
            continue
        if name in INFERENCE_LABELS:
            row = next(r for r in result['result']['batches']
                       if r['batch_size'] == 1)
            lines.append(f'| {INFERENCE_LABELS[name]} | '
                         f'{row["images_per_s"]:.2f} | '
                         f'{row["median_ms"]:.1f} |')
        elif name == 'infer_onnxruntime':
            lines.append(f'| ONNX Runtime {result["provider"]} | '
                         f'{result["images_per_s"]:.2f} | '
                         f'{result["median_ms"]:.1f} |')
    lines += ['', '## DDP, two processes on one device', '']
    for name, entry in summary['checks'].items():
        if not name.startswith('ddp_'):
            continue
        result = entry.get('result')
        if result:
            steps = ', '.join(f'{t:.0f}' for t in result['step_ms'])
            detail = (f'step ms {steps}; weights agree across ranks: '
                      f'{result["weights_agree"]}')
        else:
            detail = entry.get('log_tail', '')[-300:].strip()
        lines.append(f'- {name}: {entry["status"]}; {detail}')
    return '\n'.join(lines) + '\n'


def write_summary(summary: dict, out_dir: str) -> None:
    with open(osp.join(out_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    with open(osp.join(out_dir, 'summary.md'), 'w') as f:
        f.write(markdown(summary))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Every GPU check of this project in one run')
    parser.add_argument(
        '--out',
        default=os.environ.get('OUT') or osp.join('work_dirs', 'gpu_checks'),
        help='folder for summary.json, summary.md and each check\'s log '
        '(default: $OUT, else work_dirs/gpu_checks)')
    parser.add_argument(
        '--budget', type=float, default=600.0, metavar='SECONDS',
        help='start no check after this many seconds (default: '
        '%(default)s)')
    parser.add_argument(
        '--min-check-time', type=float, default=45.0, metavar='SECONDS',
        help='a check is started only with this much budget left '
        '(default: %(default)s)')
    parser.add_argument(
        '--only', nargs='+', metavar='CHECK',
        help='run only these checks (names as in the summary: train_b2, '
        'ddp_nccl, ...), to rerun one that failed')
    parser.add_argument(
        '--dry-run', action='store_true',
        help='on the CPU with a tiny model: checks this script')
    # One check of this script's own, in its own process (run_all starts
    # them; not for use by hand).
    parser.add_argument('--check', help=argparse.SUPPRESS)
    parser.add_argument('--result', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.check:
        p = plan(args.dry_run)
        if args.check.startswith('ddp_'):
            ddp_check(p, args.check[len('ddp_'):], args.result)
        elif args.check == 'onnxruntime':
            onnxruntime_check(p, args.result)
        else:
            sys.exit(f'unknown check {args.check!r}')
        return
    if args.only:
        known = [name for name, _, _ in checks(args, plan(args.dry_run), '')]
        unknown = [name for name in args.only if name not in known]
        if unknown:
            sys.exit(f'--only: no check named {", ".join(unknown)}; the '
                     f'checks are {", ".join(known)}')
    if not args.dry_run:
        import torch
        if not torch.cuda.is_available():
            sys.exit('no CUDA device: run on a GPU machine, or use '
                     '--dry-run to check the script on the CPU')
    summary = run_all(args)
    print(markdown(summary))
    print(f'summary written to {osp.join(args.out, "summary.json")} and '
          'summary.md')


if __name__ == '__main__':
    main()
