"""Speed and memory of a TOOD config, on synthetic inputs unless told.

    python tools/analysis/benchmark.py CONFIG --task train \\
        [--shape 512 512] [--batch-size 2] [--num-gts 8] [--profile]
    python tools/analysis/benchmark.py CONFIG --task train \\
        --compare 'K=V ...' ['K=V ...' ...] [--real-data [STEPS]] \\
        [--compile [--run-steps N]]
    python tools/analysis/benchmark.py CONFIG --task inference \\
        [--checkpoint CKPT] [--shape 800 1333] [--batch-size 2]
    python tools/analysis/benchmark.py CONFIG --task assign \\
        [--shape 800 1333] [--num-gts 1 10 50 200 1000] [--threads 1]

Common options: ``--min-run-time`` (seconds each measurement runs for,
after warm-up runs), ``--repeats`` (the steps a phase split is the median
of, and the turns of ``--compare``), ``--device`` (default: cuda when
available), ``--amp [float16|bfloat16]`` (the optimizer wrapper
``tools/train.py --amp`` uses: without a value float16 autocast with a
dynamic loss scale on CUDA, bfloat16 autocast on the CPU), ``--threads``
(torch threads), ``--out`` (the JSON file; default
``work_dirs/benchmark/<config>_<task>.json``), ``--cfg-options``.

* train: images/s of full training steps (preprocessing, forward, label
  assignment, losses, backward, optimizer step) with task-aligned
  assignment, peak memory, and one step split into phases: the share of
  label assignment, target building and losses (forward and backward);
  ``--profile`` adds the top entries of a torch.profiler run. With
  ``--compare 'K=V ...' ['K=V ...' ...]`` it times instead the config and
  each of these ``--cfg-options`` variants of it, in turns, and prints the
  speed-up of each over the config, its first step (timed alone) and its
  peak memory; ``--real-data`` makes each variant
  train on its config's train_dataloader instead of a synthetic batch,
  so that data loading and worker processes count. ``--compile`` times a
  compiled twin of every variant (``tools/train.py --compile``: the
  network compiled with the config's ``compile`` settings, if any), in the
  same turns; the first step of each variant is timed on its own, so the
  table gives the compile time, the speed-up with it excluded, after how
  many steps compiling pays for itself and, with ``--run-steps N``, the
  speed-up over a run of N steps with it included. Without ``--compare``
  it times the compiled model alone. A variant can also ask for compiling
  itself: ``--compare 'compile=True'``.
* inference: images/s and ms/image of ``test_step`` at batch 1 and at
  ``--batch-size``, peak memory, the share of post-processing (score
  filter, top-k, NMS, rescale) at batch 1 with the model's own scores and
  with saturated scores (every level fills ``nms_pre``).
* assign: time and peak memory of the TaskAlignedAssigner and the
  ATSSAssigner of the config's ``train_cfg`` for the priors of ``--shape``
  and each ``--num-gts``.

Time is measured with ``torch.utils.benchmark.Timer``; timings report the
median, the interquartile range and the extremes of its blocks (or turns).
Peak memory is what torch allocates beyond what it held before the call.
How both are measured is explained in ``benchmarking.py``, beside this
tool. The weights are random unless ``--checkpoint`` is given (speed does
not depend on them, except for the number of detections that reach NMS).
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
from contextlib import nullcontext
from typing import Callable, List, Optional, Tuple

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.runner import Runner, load_checkpoint

# The measurements live beside this script (tools/analysis/), not in the
# tood package: only this tool uses them.
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from benchmarking import (benchmark_assign, benchmark_inference,  # noqa: E402
                          benchmark_train, break_even_steps, compare_train,
                          enter_task_aligned_phase, machine_info)

from tood.datasets import prepare_data  # noqa: E402
from tood.engine import (AMP_DTYPES, compile_network,  # noqa: E402
                         compile_options, load_config, setup_amp,
                         setup_checkpoint_io)
from tood.errors import ConfigError, UnsafeCheckpointError  # noqa: E402
from tood.registry import MODELS  # noqa: E402
from tood.utils import register_all_modules  # noqa: E402

DEFAULT_SHAPES = dict(train=(512, 512), inference=(800, 1333),
                      assign=(800, 1333))
DEFAULT_NUM_GTS = dict(train=[8], inference=[0], assign=[1, 10, 50, 200,
                                                         1000])
DEFAULT_BATCH_SIZES = dict(train=2, inference=2, assign=1)
# Seconds per measurement: a few training steps, more of the quicker
# inference steps and assignments.
DEFAULT_MIN_RUN_TIME = dict(train=5.0, inference=3.0, assign=1.0)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Speed and memory of a TOOD config')
    parser.add_argument('config', help='model config file')
    parser.add_argument(
        '--checkpoint', help='weights to load (inference: realistic '
        'numbers of detections)')
    parser.add_argument(
        '--task', choices=['train', 'inference', 'assign'],
        default='inference')
    parser.add_argument(
        '--shape', type=int, nargs=2, metavar=('H', 'W'),
        help='network input size (default: 512 512 for train, 800 1333 '
        'otherwise)')
    parser.add_argument(
        '--batch-size', type=int,
        help='images per step (default: 2 for train; inference also runs '
        'batch 1; 1 for assign)')
    parser.add_argument(
        '--num-gts', type=int, nargs='+',
        help='GT boxes per image (default: 8 for train; 1 10 50 200 1000 '
        'for assign)')
    parser.add_argument(
        '--min-run-time', type=float, metavar='SECONDS',
        help='time each measurement runs for, after its warm-up runs; 0 '
        'gives one timed block (default: 5 for train, 3 for inference, 1 '
        'for assign)')
    parser.add_argument(
        '--repeats', type=int, default=3,
        help='the steps a split into phases is the median of, and the '
        'turns of --compare (default: %(default)s)')
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--amp', nargs='?', const='auto', choices=['auto', *AMP_DTYPES],
        help='mixed precision as tools/train.py --amp: without a value fp16 '
        '+ loss scaling on CUDA, bf16 on the CPU; bfloat16 on CUDA too '
        'with --amp bfloat16')
    parser.add_argument(
        '--compile', action='store_true',
        help='train: compile the network (tools/train.py --compile); with '
        '--compare, add a compiled twin of every variant')
    parser.add_argument(
        '--run-steps', type=int, metavar='N',
        help='with --compile and --compare: also give each compiled '
        "twin's speed-up over a run of N training steps, compile time "
        'included')
    parser.add_argument(
        '--threads', type=int,
        help='torch CPU threads (default: 1 for assign, torch\'s default '
        'otherwise)')
    parser.add_argument(
        '--profile', type=int, nargs='?', const=20, default=0,
        metavar='ROWS',
        help='train/inference: add the top ROWS entries (default 20) of a '
        'torch.profiler run of one step')
    parser.add_argument(
        '--compare', nargs='+', metavar='OPTIONS',
        help="train: time the config and these variants of it in turns, "
        "each a quoted set of --cfg-options, e.g. "
        "'optim_wrapper.type=OptimWrapper'")
    parser.add_argument(
        '--real-data', type=int, nargs='?', const=10, default=0,
        metavar='STEPS',
        help='with --compare: each variant trains on batches from its own '
        'train_dataloader (the images, pipeline, batch size and workers of '
        'its config) instead of a synthetic batch, STEPS (default 10) '
        'timed steps per turn')
    parser.add_argument('--out', help='JSON file for the results')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries')
    return parser.parse_args(argv)


def format_table(header: List[str], rows: List[List[object]]) -> str:
    def cell(v):
        return f'{v:.2f}' if isinstance(v, float) else str(v)

    cells = [header] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ['  '.join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def build_model(cfg: Config, checkpoint: Optional[str],
                device: torch.device) -> torch.nn.Module:
    """The config's model with its own initialisation (the head's priors,
    so that scores start near 0.01 as in training), except that nothing
    is downloaded: the backbone starts from random weights."""
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    # Keep init_weights' per-parameter report out of the table.
    if not MMLogger.check_instance_created('benchmark'):
        MMLogger.get_instance('benchmark', log_level='WARNING')
    model.init_weights()
    if checkpoint:
        try:
            load_checkpoint(model, checkpoint, map_location='cpu',
                            strict=True)
        except UnsafeCheckpointError as error:
            sys.exit(str(error))
    return model.to(device)


def autocast_for(device: torch.device,
                 amp: Optional[str]) -> Callable[[], object]:
    """The autocast ``tools/train.py --amp`` trains with, for inference."""
    if not amp:
        return nullcontext
    dtype = torch.float16 if device.type == 'cuda' and \
        amp != 'bfloat16' else torch.bfloat16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def build_for_training(args: argparse.Namespace, cfg: Config,
                       device: torch.device,
                       compile_settings: Optional[dict] = None
                       ) -> Tuple[torch.nn.Module, OptimWrapper]:
    """The model and optimizer wrapper of one training benchmark: the
    config's, or with ``--amp`` the wrapper ``tools/train.py --amp`` uses;
    the network compiled with ``compile_settings`` (``torch.compile``
    arguments) unless None; the head set to its steady state, task-aligned
    assignment after the ATSS warm-up."""
    if args.amp:
        dtype = None if args.amp == 'auto' else args.amp
        if device.type == 'cuda' and not torch.cuda.is_available():
            sys.exit('--amp with --device cuda needs a CUDA device')
        if device.type == 'cpu':
            if dtype == 'float16':
                sys.exit('--amp float16 needs CUDA; on the CPU --amp '
                         'autocasts to bfloat16')
            # setup_amp picks by torch.cuda.is_available(); the benchmark
            # may run on the CPU of a machine that has a GPU.
            cfg.optim_wrapper.type = 'CPUBFloat16OptimWrapper'
            print('--amp: bfloat16 autocast on the CPU')
        else:
            print(setup_amp(cfg, dtype))
    model = build_model(cfg, args.checkpoint, device)
    enter_task_aligned_phase(model)
    if compile_settings is not None:
        compile_network(model, compile_settings)
    return model, build_optim_wrapper(model, cfg.optim_wrapper)


def compile_settings_of(cfg: Config, asked: bool) -> Optional[dict]:
    """The ``torch.compile`` arguments a variant runs with: its config's
    ``compile`` entry (removed from ``cfg``), or with ``asked`` (``--compile``)
    that entry's settings or the defaults; None for eager."""
    try:
        settings = compile_options(cfg.pop('compile', None))
    except ConfigError as error:
        sys.exit(str(error))
    if asked and settings is None:
        return {}
    return settings


def run_train(args: argparse.Namespace, cfg: Config, device: torch.device,
              shape: Tuple[int, int], batch_size: int,
              num_gts: List[int]) -> Tuple[dict, str]:
    settings = compile_settings_of(cfg, args.compile)
    model, optim_wrapper = build_for_training(args, cfg, device, settings)
    result = benchmark_train(model, optim_wrapper, batch_size, shape,
                             num_gts[0], args.min_run_time, args.repeats,
                             device, args.profile)
    rows = [[
        f'{shape[0]}x{shape[1]}', batch_size, result['optim_wrapper'],
        result['median_ms'], result['iqr_ms'], result['images_per_s'],
        result['peak_mib']
    ]]
    table = format_table([
        'input', 'batch', 'optim wrapper', 'step ms (median)', 'IQR ms',
        'images/s', 'peak MiB'
    ], rows)
    phases = result['phases_ms']
    table += '\n\none step, by phase (median ms):\n' + format_table(
        list(phases), [list(phases.values())])
    table += ('\nlabel assignment + targets + losses (forward and backward):'
              f' {100 * result["assignment_targets_losses_share"]:.1f}% '
              'of the step')
    table += '\nlosses: ' + ', '.join(
        f'{k}={v:.4g}' for k, v in result['losses'].items())
    if settings is not None:
        result['compile'] = settings
        table += (f'\ncompiled network ({settings or "default settings"}): '
                  f'first step {result["first_step_s"]:.1f} s')
    if args.profile:
        table += '\n\n' + result['profile_table']
    return result, table


def parse_options(text: str) -> dict:
    """One ``--compare`` entry, parsed as ``--cfg-options`` are."""
    parser = argparse.ArgumentParser(prog='--compare')
    parser.add_argument('--options', nargs='+', action=DictAction)
    return parser.parse_args(['--options', *text.split()]).options


def run_compare(args: argparse.Namespace, device: torch.device,
                shape: Tuple[int, int], batch_size: int,
                num_gts: List[int]) -> Tuple[dict, str]:
    variants, loaders, settings = {}, {}, {}
    for name in ['the config'] + args.compare:
        options = dict(args.cfg_options or {})
        if name != 'the config':
            options.update(parse_options(name))
        cfg = load_config(args.config, options)
        compiled = compile_settings_of(cfg, args.compile)
        # With --compile, each variant runs eager and compiled.
        twins = [(name, None), (f'{name} + compile', compiled)] \
            if args.compile else [(name, compiled)]
        for twin, twin_settings in twins:
            variants[twin] = build_for_training(args, copy.deepcopy(cfg),
                                                device, twin_settings)
            settings[twin] = twin_settings
            if args.real_data:
                # The shapes data is drawn first if the config's preparer
                # makes it.
                prepare_data(cfg, ['train'])
                loaders[twin] = Runner.build_dataloader(
                    copy.deepcopy(cfg.train_dataloader),
                    seed=cfg.get('randomness', {}).get('seed'))
    steps_per_turn = args.real_data or 1
    result = compare_train(variants, batch_size, shape, num_gts[0],
                           args.repeats, device,
                           loaders if args.real_data else None,
                           steps_per_turn)
    for name, r in result.items():
        r['compile'] = settings[name]
    table = format_table([
        'variant', 'optim wrapper', 'step ms (median)', 'IQR ms',
        'images/s', 'speed-up', 'first step s', 'peak MiB'
    ], [[
        name, r['optim_wrapper'], r['median_ms'], r['iqr_ms'],
        r['images_per_s'], r['speed_up'], r['first_step_s'], r['peak_mib']
    ] for name, r in result.items()])
    if args.compile:
        table += '\n\n' + compile_table(result, args.run_steps)
    data = (f'batches of each train_dataloader, {steps_per_turn} timed '
            'steps per turn' if args.real_data else
            f'{shape[0]}x{shape[1]}, batch {batch_size}')
    return dict(variants=result, steps_per_turn=steps_per_turn), (
        f'{args.repeats} turns, each timing every variant in turn '
        f'({data}):\n' + table)


def compile_table(result: dict, run_steps: Optional[int]) -> str:
    """Each compiled twin against its eager twin (``result`` of
    ``compare_train`` with ``--compile``): compile time, speed-up with it
    excluded, the steps after which it has paid for itself, and the
    speed-up over ``run_steps`` steps with it included. The numbers are
    also added to the twin's result."""
    rows = []
    for name, compiled in result.items():
        if not name.endswith(' + compile'):
            continue
        eager = result[name[:-len(' + compile')]]
        compiled['speed_up_vs_eager'] = eager['median_ms'] / \
            compiled['median_ms']
        compiled['break_even_steps'] = break_even_steps(eager, compiled)
        row = [
            name, compiled['compile_s'], compiled['speed_up_vs_eager'],
            'never' if compiled['break_even_steps'] is None else
            f'{compiled["break_even_steps"]:.0f}'
        ]
        if run_steps:
            def total(r):
                return r['first_step_s'] + (run_steps - 1) * \
                    r['median_ms'] / 1e3

            compiled['run_steps'] = run_steps
            compiled['speed_up_vs_eager_with_compile'] = total(eager) / \
                total(compiled)
            row.append(compiled['speed_up_vs_eager_with_compile'])
        rows.append(row)
    header = ['compiled', 'compile s', 'speed-up (compile excluded)',
              'pays off after steps']
    if run_steps:
        header.append(f'speed-up over {run_steps} steps (compile included)')
    return format_table(header, rows)


def run_inference(args: argparse.Namespace, cfg: Config,
                  device: torch.device, shape: Tuple[int, int],
                  batch_size: int) -> Tuple[dict, str]:
    model = build_model(cfg, args.checkpoint, device)
    batch_sizes = sorted({1, batch_size})
    result = benchmark_inference(model, batch_sizes, shape,
                                 args.min_run_time, args.repeats, device,
                                 autocast_for(device, args.amp),
                                 args.profile)
    rows = [[
        f'{shape[0]}x{shape[1]}', r['batch_size'], r['median_ms'],
        r['iqr_ms'], r['ms_per_image'], r['images_per_s'], r['peak_mib']
    ] for r in result['batches']]
    table = format_table([
        'input', 'batch', 'step ms (median)', 'IQR ms', 'ms/image',
        'images/s', 'peak MiB'
    ], rows)
    if 'phases_ms' in result:
        phases = result['phases_ms']
        table += '\n\nbatch 1, by phase (median ms):\n' + format_table(
            list(phases), [list(phases.values())])
        table += (
            f'\npost-processing: {100 * result["post_processing_share"]:.2f}'
            '% of inference; with saturated scores '
            f'{result["saturated_post_processing_ms"]:.1f} ms = '
            f'{100 * result["saturated_post_processing_share"]:.2f}%')
    if args.profile:
        table += '\n\n' + result['profile_table']
    return result, table


def run_assign(args: argparse.Namespace, cfg: Config, device: torch.device,
               shape: Tuple[int, int], batch_size: int,
               num_gts: List[int]) -> Tuple[dict, str]:
    if args.amp:
        print('--amp: assigners always compute in float32; ignored.')
    # The model is built for its head's assigners, priors and classes, as
    # training builds them from the config.
    model = build_model(cfg, None, torch.device('cpu'))
    rows = benchmark_assign(model, num_gts, shape, batch_size,
                            args.min_run_time, device)
    table = format_table([
        'assigner', 'GTs', 'priors', 'batch', 'median ms', 'IQR ms',
        'min ms', 'peak MiB', 'N×G buffers', 'positives'
    ], [[
        r['assigner'], r['num_gts'], r['num_priors'], r['batch_size'],
        r['median_ms'], r['iqr_ms'], r['min_ms'], r['peak_mib'],
        r['buffers'], r['positives']
    ] for r in rows])
    return dict(shape=list(shape), rows=rows), table


def main(argv=None) -> None:
    args = parse_args(argv)
    task = args.task
    shape = tuple(args.shape or DEFAULT_SHAPES[task])
    batch_size = args.batch_size or DEFAULT_BATCH_SIZES[task]
    num_gts = args.num_gts or DEFAULT_NUM_GTS[task]
    if args.min_run_time is None:
        args.min_run_time = DEFAULT_MIN_RUN_TIME[task]
    threads = args.threads or (1 if task == 'assign' else None)
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(args.device)

    if args.compare and task != 'train':
        sys.exit('--compare is for --task train')
    if args.compile and task != 'train':
        sys.exit('--compile is for --task train')
    if args.run_steps and not (args.compile and args.compare):
        sys.exit('--run-steps is for --compile with --compare')
    if args.real_data and not args.compare:
        sys.exit('--real-data is for --compare')
    register_all_modules()
    setup_checkpoint_io()
    cfg = load_config(args.config, args.cfg_options)
    config_name = osp.splitext(osp.basename(args.config))[0]
    out = args.out or osp.join('work_dirs', 'benchmark',
                               f'{config_name}_{task}.json')
    machine = machine_info(device)

    if args.compare:
        result, table = run_compare(args, device, shape, batch_size, num_gts)
    elif task == 'train':
        result, table = run_train(args, cfg, device, shape, batch_size,
                                  num_gts)
    elif task == 'inference':
        result, table = run_inference(args, cfg, device, shape, batch_size)
    else:
        result, table = run_assign(args, cfg, device, shape, batch_size,
                                   num_gts)
    # The load may change during a long run; keep both ends.
    machine['load_average_end'] = machine_info(device).get('load_average')
    print(table)

    payload = dict(
        task=task,
        config=args.config,
        checkpoint=args.checkpoint,
        command=' '.join(['python', 'tools/analysis/benchmark.py'] +
                         (sys.argv[1:] if argv is None else list(argv))),
        settings=dict(
            shape=list(shape),
            batch_size=batch_size,
            num_gts=num_gts,
            min_run_time=args.min_run_time,
            repeats=args.repeats,
            amp=args.amp,
            compile=args.compile,
            threads=torch.get_num_threads()),
        machine=machine,
        result=result)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(payload, f, indent=2)
    print(f'results written to {out}')


if __name__ == '__main__':
    main()
