"""Speed and memory of a TOOD config, on synthetic inputs.

    python tools/analysis/benchmark.py CONFIG --task train \\
        [--shape 512 512] [--batch-size 2] [--num-gts 8] \\
        [--compare 'K=V ...' ...] [--compile [--run-steps N]]
    python tools/analysis/benchmark.py CONFIG --task inference \\
        [--checkpoint CKPT] [--shape 800 1333] [--batch-size 2] [--amp]
    python tools/analysis/benchmark.py CONFIG --task assign \\
        [--shape 800 1333] [--num-gts 1 10 50 200 1000] [--threads 1]

Common options: ``--repeats`` (turns of a comparison, steps a phase split
averages), ``--min-run-time`` (seconds a single measurement runs for
after its warm-up), ``--device`` (default: cuda when available),
``--threads`` (torch threads), ``--out`` (default
``work_dirs/benchmark/<config>_<task>.json``), ``--cfg-options``.

* train: full training steps (preprocessing, forward, assignment, losses,
  backward, optimizer step) after the ATSS warm-up, with the config's
  optimizer wrapper (``--amp``: the one ``tools/train.py --amp`` uses) at
  lr 0, so that the weights stay as built. The config and each
  ``--compare`` variant (a quoted set of ``--cfg-options``) are timed in
  turns: step time, images/s, speed-up over the config, first step (timed
  alone) and peak memory. ``--compile`` adds a compiled twin of every
  variant (``tools/train.py --compile``, the config's ``compile``
  settings): compile time, speed-up with it excluded, the steps after
  which it pays and, with ``--run-steps N``, the speed-up over N steps
  with it included. The config's step is also split into phases.
* inference: ``test_step`` at batch 1 and ``--batch-size``, peak memory,
  and at batch 1 the split into phases (post-processing: score filter,
  top-k, NMS, rescale). ``--amp`` autocasts as training's ``--amp`` does.
  Random weights leave almost nothing above the score threshold; give
  ``--checkpoint``, or ``--cfg-options model.test_cfg.score_thr=0`` for
  the most work NMS can get.
* assign: time, peak memory, positives and a digest of the result of the
  criterion's assigners (task-aligned and its ATSS warm-up) on the priors
  of ``--shape`` for each ``--num-gts``, the same inputs in every run.

Phases are the regions the library labels (``tood.models.profiling``),
read back from ``torch.profiler``; ``tood/analysis/benchmarking.py`` says
how time, phases and memory are measured. Without ``--checkpoint`` the
weights are those of seed 0, and nothing is downloaded.
"""
import argparse
import copy
import hashlib
import json
import os
import os.path as osp
import sys
from contextlib import nullcontext
from typing import Dict, Optional, Tuple

import torch
from mmengine.config import Config, DictAction
from mmengine.optim import build_optim_wrapper

from tood.analysis.benchmarking import (MiB, assign_inputs, check_finite,
                                        detection_batch,
                                        enter_task_aligned_phase,
                                        format_table, machine_info,
                                        peak_memory, profile_phases,
                                        summarise, time_call, time_first,
                                        time_in_turns)
from tood.apis import init_detector
from tood.engine import (AMP_DTYPES, compile_network, compile_options,
                         exit_if_user_error, load_config, setup_amp)

DEFAULTS = dict(  # shape, batch size, GTs, min run time (s)
    train=((512, 512), 2, [8], 5.0),
    inference=((800, 1333), 2, [0], 3.0),
    assign=((800, 1333), 1, [1, 10, 50, 200, 1000], 1.0))
ASSIGNER_NAMES = dict(TaskAlignedAssigner='TAL', ATSSAssigner='ATSS')
TIMES = {'step ms (median)': 'median_ms', 'IQR ms': 'iqr_ms'}  # columns


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Speed and memory of a TOOD config (see the module '
        'docstring)')
    parser.add_argument('config')
    parser.add_argument('--checkpoint', help='weights (default: seed 0)')
    parser.add_argument('--task', default='inference',
                        choices=['train', 'inference', 'assign'])
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'))
    parser.add_argument('--batch-size', type=int)
    parser.add_argument('--num-gts', type=int, nargs='+')
    parser.add_argument('--min-run-time', type=float, metavar='SECONDS')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', nargs='?', const='auto',
                        choices=['auto', *AMP_DTYPES])
    parser.add_argument('--compile', action='store_true')
    parser.add_argument('--run-steps', type=int, metavar='N')
    parser.add_argument('--threads', type=int)
    parser.add_argument('--compare', nargs='+', metavar='OPTIONS')
    parser.add_argument('--out')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    if (args.compare or args.compile) and args.task != 'train':
        parser.error('--compare and --compile are for --task train')
    if args.run_steps and not args.compile:
        parser.error('--run-steps is for --compile')
    return args


def parse_options(text: str) -> dict:
    """One ``--compare`` entry, parsed as ``--cfg-options`` are."""
    parser = argparse.ArgumentParser(prog='--compare')
    parser.add_argument('--options', nargs='+', action=DictAction)
    return parser.parse_args(['--options', *text.split()]).options


def load(args: argparse.Namespace, options: Optional[dict] = None) -> Config:
    """The config with ``--cfg-options`` and then ``options``; for training
    with ``--amp``, the optimizer wrapper ``tools/train.py --amp`` sets."""
    cfg = load_config(args.config, {**(args.cfg_options or {}),
                                    **(options or {})})
    if args.amp and args.task == 'train':
        print(setup_amp(cfg, None if args.amp == 'auto' else args.amp))
    return cfg


def run_train(args: argparse.Namespace,
              device: torch.device) -> Tuple[dict, str]:
    """The config and its variants (and compiled twins) timed in turns on
    one synthetic batch; the config's step split into phases. Returns the
    results and the table to print."""
    steps, variants, data = {}, {}, None
    shape, batch_size = args.shape, args.batch_size
    for entry in ['the config'] + (args.compare or []):
        cfg = load(args, None if entry == 'the config' else
                   parse_options(entry))
        compiled = compile_options(cfg.pop('compile', None))
        twins = [(entry, None), (f'{entry} + compile', compiled or {})] \
            if args.compile else [(entry, compiled)]
        for name, settings in twins:
            model = init_detector(cfg, args.checkpoint, str(device)).train()
            enter_task_aligned_phase(model)
            if settings is not None:
                compile_network(model, settings)
            wrapper = build_optim_wrapper(model,
                                          copy.deepcopy(cfg.optim_wrapper))
            for group in wrapper.optimizer.param_groups:
                # Steps at full lr from random weights would soon leave no
                # positives to assign.
                group['lr'] = 0.0
            data = data or detection_batch(batch_size, shape,
                                           args.num_gts[0],
                                           model.bbox_head.num_classes)
            steps[name] = (lambda m=model, w=wrapper: check_finite(
                m.train_step(data, w)))
            variants[name] = dict(optim_wrapper=type(wrapper).__name__,
                                  compile=settings)
    first_s = {name: time_first(step, device) for name, step in steps.items()}
    timings = {name: summarise(m)
               for name, m in time_in_turns(steps, args.repeats).items()}
    for name, t in timings.items():
        variants[name].update(
            t, images_per_s=batch_size / t['median_ms'] * 1e3,
            speed_up=timings['the config']['median_ms'] / t['median_ms'],
            first_step_s=first_s[name],
            compile_s=max(0.0, first_s[name] - t['median_ms'] / 1e3),
            peak_mib=peak_memory(steps[name], device) / MiB)
    phases = profile_phases(steps['the config'], args.repeats, device)
    table = (f'{args.repeats} turns, each timing every variant in turn '
             f'({shape[0]}x{shape[1]}, batch {batch_size}):\n' + format_table(
                 {'variant': 'name', 'optim wrapper': 'optim_wrapper',
                  **TIMES, 'images/s': 'images_per_s', 'speed-up': 'speed_up',
                  'first step s': 'first_step_s', 'peak MiB': 'peak_mib'},
                 [dict(v, name=name) for name, v in variants.items()]))
    if args.compile:
        table += '\n\n' + compile_table(variants, args.run_steps)
    table += ('\n\nthe config, one step by phase (ms, mean of '
              f'{args.repeats} profiled steps):\n' +
              format_table({k: k for k in phases}, [phases]) +
              '\nlosses: ' + ', '.join(f'{k}={v:.4g}' for k, v in
                                       steps['the config']().items()))
    return dict(variants=variants, phases_ms=phases), table


def compile_table(variants: Dict[str, dict], run_steps: Optional[int]) -> str:
    """Each compiled twin against its eager twin; the numbers are also
    added to the twin's result."""
    def total_s(r: dict) -> float:  # a run of run_steps steps
        return r['first_step_s'] + (run_steps - 1) * r['median_ms'] / 1e3

    rows = []
    for name, twin in variants.items():
        if not name.endswith(' + compile'):
            continue
        eager = variants[name[:-len(' + compile')]]
        saved_s = (eager['median_ms'] - twin['median_ms']) / 1e3
        pays = (twin['compile_s'] - eager['compile_s']) / saved_s \
            if saved_s > 0 else None
        twin.update(speed_up_vs_eager=eager['median_ms'] / twin['median_ms'],
                    break_even_steps=pays)
        if run_steps:
            twin.update(run_steps=run_steps,
                        speed_up_vs_eager_with_compile=total_s(eager) /
                        total_s(twin))
        rows.append(dict(twin, name=name, pays='never' if pays is None else
                         f'{pays:.0f}'))
    columns = {'compiled': 'name', 'compile s': 'compile_s',
               'speed-up (compile excluded)': 'speed_up_vs_eager',
               'pays off after steps': 'pays'}
    if run_steps:
        columns[f'speed-up over {run_steps} steps (compile included)'] = \
            'speed_up_vs_eager_with_compile'
    return format_table(columns, rows)


def run_inference(args: argparse.Namespace,
                  device: torch.device) -> Tuple[dict, str]:
    """``test_step`` at batch 1 and ``--batch-size``; batch 1 split into
    phases."""
    model = init_detector(load(args), args.checkpoint, str(device))
    autocast = nullcontext
    if args.amp:  # as tools/train.py --amp trains
        dtype = torch.float16 if device.type == 'cuda' and \
            args.amp != 'bfloat16' else torch.bfloat16
        autocast = (lambda: torch.autocast(device.type, dtype=dtype))
    batches = []
    for size in sorted({1, args.batch_size}):
        data = detection_batch(size, args.shape, 0,
                               model.bbox_head.num_classes)

        def step():
            with torch.no_grad(), autocast():
                return model.test_step(data)

        t = time_call(step, args.min_run_time)
        batches.append(dict(
            batch_size=size, **t, ms_per_image=t['median_ms'] / size,
            images_per_s=size / t['median_ms'] * 1e3,
            peak_mib=peak_memory(step, device) / MiB))
        if size == 1:
            phases = profile_phases(step, args.repeats, device)
    share = phases['post_processing'] / phases['step']
    table = ('{}x{}:\n'.format(*args.shape) + format_table(
        {'batch': 'batch_size', **TIMES, 'ms/image': 'ms_per_image',
         'images/s': 'images_per_s', 'peak MiB': 'peak_mib'}, batches) +
        f'\n\nbatch 1 by phase (ms, mean of {args.repeats} profiled '
        'steps):\n' + format_table({k: k for k in phases}, [phases]) +
        f'\npost-processing: {100 * share:.2f}% of the step')
    return dict(batches=batches, phases_ms=phases,
                post_processing_share=share), table


def digest(result) -> str:
    """Short hash of an assignment, bit for bit: which GT each prior got
    and its soft target."""
    return hashlib.sha1(b''.join(
        t.cpu().contiguous().numpy().tobytes()
        for t in (result.gt_index, result.metrics))).hexdigest()[:12]


def run_assign(args: argparse.Namespace,
               device: torch.device) -> Tuple[dict, str]:
    """Each assigner of the config's criterion (as training builds it) on
    the priors of ``--shape`` and each number of GTs (also the seed of the
    inputs)."""
    model = init_detector(load(args), args.checkpoint, 'cpu')
    head, criterion = model.bbox_head, model.bbox_head.criterion
    assigners = [a for a in (getattr(criterion, 'assigner', None),
                             getattr(criterion, 'initial_assigner', None))
                 if a is not None]
    rows = []
    for g in args.num_gts:
        inputs = assign_inputs(g, args.batch_size, args.shape,
                               head.num_classes, head.strides,
                               criterion.anchor_scale, g, device)
        num_priors = inputs['priors'].points.size(0)
        for assigner in assigners:
            def call(assigner=assigner):
                return assigner.assign(inputs['priors'], inputs['gt'],
                                       inputs['pred_scores'],
                                       inputs['pred_bboxes'])

            result = call()
            timing = time_call(call, args.min_run_time)
            peak = peak_memory(call, device)
            name = type(assigner).__name__
            rows.append(dict(
                assigner=ASSIGNER_NAMES.get(name, name), num_gts=g,
                num_priors=num_priors, batch_size=args.batch_size,
                positives=int(result.fg_mask.sum()), digest=digest(result),
                **timing, peak_mib=peak / MiB,
                buffers=peak / (4.0 * num_priors * g * args.batch_size)))
    return dict(shape=list(args.shape), rows=rows), format_table(
        {'assigner': 'assigner', 'GTs': 'num_gts', 'priors': 'num_priors',
         'batch': 'batch_size', 'median ms': 'median_ms', 'IQR ms': 'iqr_ms',
         'min ms': 'min_ms', 'peak MiB': 'peak_mib', 'N×G buffers': 'buffers',
         'positives': 'positives', 'digest': 'digest'}, rows)


def main(argv=None) -> None:
    args = parse_args(argv)
    # The task's defaults for what was not given.
    for key, default in zip(('shape', 'batch_size', 'num_gts',
                             'min_run_time'), DEFAULTS[args.task]):
        if getattr(args, key) is None:
            setattr(args, key, default)
    args.shape = tuple(args.shape)
    if args.threads or args.task == 'assign':
        torch.set_num_threads(args.threads or 1)
    device = torch.device(args.device)
    machine = machine_info(device)
    try:
        result, table = dict(train=run_train, inference=run_inference,
                             assign=run_assign)[args.task](args, device)
    except Exception as error:
        exit_if_user_error(error)  # a bad config entry: a message
        raise
    # The load may change during a long run; keep both ends.
    machine['load_average_end'] = machine_info(device)['load_average']
    print(table)
    out = args.out or osp.join('work_dirs', 'benchmark', osp.splitext(
        osp.basename(args.config))[0] + f'_{args.task}.json')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    command = sys.argv[1:] if argv is None else list(argv)
    settings = {k: getattr(args, k) for k in (
        'shape', 'batch_size', 'num_gts', 'min_run_time', 'repeats', 'amp',
        'compile')}
    with open(out, 'w') as f:
        json.dump(dict(
            task=args.task, config=args.config, checkpoint=args.checkpoint,
            command=' '.join(['python tools/analysis/benchmark.py',
                              *command]),
            settings=dict(settings, threads=torch.get_num_threads()),
            machine=machine, result=result, table=table), f, indent=2)
    print(f'results written to {out}')


if __name__ == '__main__':
    main()
