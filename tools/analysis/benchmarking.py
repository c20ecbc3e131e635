"""Speed and memory of TOOD: the measurements behind
``tools/analysis/benchmark.py`` (which imports this module from its own
folder; nothing in the ``tood`` package needs it).

Three tasks, each on synthetic inputs of a chosen size, so that runs are
comparable between machines and with other toolboxes at identical
settings:

* :func:`benchmark_train`: full training steps (data preprocessor, forward,
  losses, backward, optimizer step) with the config's optimizer wrapper,
  mixed precision included; plus a split of one step into network forward,
  label assignment and losses, their backward, the network's backward and
  the optimizer step; :func:`compare_train` times variants of a config in
  turns and gives their speed-ups;
* :func:`benchmark_inference`: ``test_step`` at batch 1 and larger
  batches, and the post-processing (score filter, top-k, NMS, rescale)
  alone;
* :func:`benchmark_assign`: one assigner on the priors of one input size
  and a given number of random GT boxes per image.

**Time** is measured with ``torch.utils.benchmark.Timer``, which
synchronises the accelerator around each timed block and runs the
statement with a fixed number of threads (ours: torch's current setting).
A single measurement uses ``Timer.blocked_autorange``: warm-up runs, then
blocks of runs until ``min_run_time`` seconds are spent. Variants compared
in turns use ``Timer.timeit(n)`` once per variant per turn: two untimed
runs, then ``n`` timed ones. Each result carries the median, the
interquartile range and the extremes over the blocks (or turns). The
split of one step into phases is not a repeated measurement but laps of
``time.perf_counter`` within a step, synchronised at each boundary.

**Peak memory** is the largest amount of memory that torch's allocator
holds during a call beyond what it held when the call began (weights,
optimizer state and inputs are not counted). On CUDA it comes from the
caching allocator's statistics. On the CPU, ``tracemalloc`` and the process
RSS cannot see it (torch allocates outside Python's allocator, and freed
blocks stay in the process), so the call runs once more under
``torch.profiler`` with ``profile_memory=True``, which reports every
allocation and free of torch's CPU allocator with a timestamp; the peak is
the largest running sum of those sizes.
"""
import math
import os
import platform
import statistics
import time
from contextlib import ExitStack, contextmanager, nullcontext
from typing import (Callable, Dict, Iterable, Iterator, List, Optional,
                    Sequence, Tuple)

import torch
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper
from mmengine.structures import InstanceData
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.benchmark import Measurement, Timer

from tood.structures import DetDataSample

MiB = 1024.0**2


# ---------------------------------------------------------------------- #
# Timing and memory
# ---------------------------------------------------------------------- #
def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that a lap of wall-clock time is
    complete (the Timer does this itself)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def make_timer(fn: Callable[[], object], label: str = '') -> Timer:
    """A ``torch.utils.benchmark.Timer`` of ``fn()`` with torch's current
    number of threads (the Timer's default is one)."""
    return Timer(
        stmt='fn()',
        globals=dict(fn=fn),
        label=label,
        num_threads=torch.get_num_threads())


def summarise(measurement: Measurement) -> Dict[str, float]:
    """The median and spread of a Timer's measurement, in milliseconds.

    ``repeats`` counts its blocks (or turns) and ``runs_per_repeat`` the
    runs each of them averaged.
    """
    times = measurement.times
    return dict(
        median_ms=measurement.median * 1e3,
        iqr_ms=measurement.iqr * 1e3,
        min_ms=min(times) * 1e3,
        max_ms=max(times) * 1e3,
        repeats=len(times),
        runs_per_repeat=measurement.number_per_run)


def time_call(fn: Callable[[], object], min_run_time: float,
              label: str = '') -> Dict[str, float]:
    """``fn``'s time per call by ``Timer.blocked_autorange``: warm-up runs,
    then blocks of runs for at least ``min_run_time`` seconds (at least
    one block)."""
    return summarise(
        make_timer(fn, label).blocked_autorange(min_run_time=min_run_time))


def time_in_turns(fns: Dict[str, Callable[[], object]], turns: int,
                  runs_per_turn: int = 1) -> Dict[str, Dict[str, float]]:
    """Time several functions in turns: each turn times every function once
    (``Timer.timeit(runs_per_turn)``: two untimed runs, then
    ``runs_per_turn`` timed ones), so that a change of machine load during
    the run slows them alike and their ratio stays fair. Each result
    summarises its ``turns`` per-run times."""
    timers = {name: make_timer(fn, name) for name, fn in fns.items()}
    measured: Dict[str, List[Measurement]] = {name: [] for name in fns}
    for _ in range(turns):
        for name, timer in timers.items():
            measured[name].append(timer.timeit(runs_per_turn))
    # merge() gives one Measurement per timer, of per-run times.
    return {
        name: summarise(Measurement.merge(ms)[0])
        for name, ms in measured.items()
    }


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Bytes allocated by torch during ``fn`` at its peak, beyond what was
    allocated when it began (see the module docstring)."""
    if device.type == 'cuda':
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU],
                 profile_memory=True) as prof:
        fn()
    changes = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == '[memory]' and e.device_type().name == 'CPU')
    held = peak = 0
    for _, nbytes in changes:
        held += nbytes
        peak = max(peak, held)
    return peak


def machine_info(device: torch.device) -> Dict[str, object]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    info = dict(
        cpu=cpu,
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
        device=str(device))
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    if hasattr(os, 'getloadavg'):
        info['load_average'] = [round(x, 2) for x in os.getloadavg()]
    return info


# ---------------------------------------------------------------------- #
# The model internals a benchmark reaches into. The head, its losses and
# the assigners' call signatures live in tood/models and change with
# them: every use of them is in this section, so that such a change is
# followed here alone.
# ---------------------------------------------------------------------- #
def prior_inputs(sizes: Sequence[Tuple[int, int]], strides: Sequence[int],
                 pad_shape: Tuple[int, int], batch_size: int,
                 anchor_scale: float):
    """The ``Priors`` the head derives from its feature-map sizes for a
    batch of images padded to ``pad_shape``."""
    from tood.models.task_modules import make_priors
    samples = [
        DetDataSample(
            metainfo=dict(pad_shape=pad_shape, batch_input_shape=pad_shape))
        for _ in range(batch_size)
    ]
    return make_priors(sizes, strides, anchor_scale, samples,
                       torch.device('cpu'))


def padded_gts(gt_bboxes: Tensor, gt_labels: Tensor):
    """(B, G, 4) boxes and (B, G) labels, every slot used, as the
    ``PaddedGT`` the assigners take."""
    from tood.structures import PaddedGT
    return PaddedGT(gt_bboxes, gt_labels,
                    torch.ones(gt_labels.shape, dtype=torch.bool,
                               device=gt_labels.device))


def run_assigner(assigner, inputs: dict):
    """Call an assigner (task-aligned or ATSS) on :func:`assign_inputs`;
    returns its result (with a ``fg_mask``)."""
    return assigner.assign(inputs['priors'], inputs['gt'],
                           inputs['pred_scores'], inputs['pred_bboxes'])


def model_assigners(model: nn.Module) -> List[object]:
    """The assigner objects the model's head uses, wherever the head keeps
    them (found by their class names)."""
    found = []
    for module in model.bbox_head.modules():
        for value in vars(module).values():
            if type(value).__name__.endswith('Assigner') and \
                    all(value is not f for f in found):
                found.append(value)
    return found


def head_assigners(model: nn.Module) -> Dict[str, object]:
    """The head's assigners as it builds them (``alpha`` and ``beta`` from
    the config included), by short name: task-aligned ('TAL') first."""
    short = dict(TaskAlignedAssigner='TAL', ATSSAssigner='ATSS')
    named = {
        short.get(type(a).__name__, type(a).__name__): a
        for a in model_assigners(model)
    }
    return {k: named[k] for k in sorted(named, key=lambda k: (k != 'TAL', k))}


def set_training_progress(epoch: int, iteration: int = 0) -> None:
    """Make the head train as at ``epoch`` and ``iteration`` (0-based),
    which decide between the ATSS warm-up and task-aligned assignment.

    The head reads them from mmengine's message hub, as a runner's train
    loop keeps them; a hub of our own is made current, so that what an
    earlier runner in this process left there does not count.
    """
    hub = MessageHub.get_instance(f'tood-benchmark-{time.time_ns()}')
    hub.update_info('epoch', epoch)
    hub.update_info('iter', iteration)


def enter_task_aligned_phase(model: nn.Module) -> None:
    """Make the head train as after the ATSS warm-up (task-aligned
    assignment), the steady state a benchmark should time: the epoch and
    iteration at which its criterion ends the warm-up."""
    criterion = model.bbox_head.criterion
    set_training_progress(criterion.initial_epoch,
                          criterion.initial_iter or 0)


def head_losses(model: nn.Module, cls_scores: List[Tensor],
                bbox_preds: List[Tensor], data_samples: list) -> dict:
    """The head's losses given its outputs."""
    return model.bbox_head.loss_by_feat(cls_scores, bbox_preds, data_samples)


def head_predictions(model: nn.Module, cls_scores: List[Tensor],
                     bbox_preds: List[Tensor], metas: List[dict]) -> list:
    """The head's post-processing given its outputs."""
    return model.bbox_head.predict_by_feat(cls_scores, bbox_preds, metas)


@contextmanager
def labelled_regions(model: nn.Module) -> Iterator[None]:
    """Name the network, the losses (with the assignment inside) and the
    post-processing in profiles."""
    head = model.bbox_head
    with labelled(model, 'extract_feat', 'network'), \
            labelled(head, 'forward', 'network'), \
            labelled(head, 'loss_by_feat', 'targets_losses'), \
            labelled_all(model_assigners(model), 'assign', 'assignment'), \
            labelled(head, 'predict_by_feat', 'post_processing'):
        yield


# ---------------------------------------------------------------------- #
# Synthetic inputs
# ---------------------------------------------------------------------- #
def padded_shape(shape: Tuple[int, int],
                 divisor: int = 32) -> Tuple[int, int]:
    return (math.ceil(shape[0] / divisor) * divisor,
            math.ceil(shape[1] / divisor) * divisor)


def featmap_sizes(shape: Tuple[int, int],
                  strides: Sequence[int]) -> List[Tuple[int, int]]:
    """Feature-map sizes of the padded input, as a stride-2 ResNet/FPN
    gives them (the padded size is a multiple of 32, so P3-P5 divide it
    exactly; each extra level halves, rounding up)."""
    h, w = padded_shape(shape)
    return [(math.ceil(h / s), math.ceil(w / s)) for s in strides]


def random_gt_boxes(num: int, shape: Tuple[int, int],
                    generator: torch.Generator) -> Tensor:
    """(num, 4) boxes inside an image of ``shape`` (H, W), sides between 8
    and 512 pixels (log-uniform, like the spread of object sizes in
    COCO)."""
    h, w = shape
    sides = torch.exp(
        torch.empty(num, 2).uniform_(math.log(8), math.log(512),
                                     generator=generator))
    centres = torch.rand(num, 2, generator=generator) * torch.tensor(
        [float(w), float(h)])
    boxes = torch.cat([centres - sides / 2, centres + sides / 2], -1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    return boxes


def assign_inputs(num_gts: int,
                  batch_size: int = 1,
                  shape: Tuple[int, int] = (800, 1333),
                  num_classes: int = 80,
                  strides: Sequence[int] = (8, 16, 32, 64, 128),
                  anchor_scale: float = 8.0,
                  seed: int = 0,
                  device: torch.device = torch.device('cpu')) -> dict:
    """What the head hands its assigners for a batch of ``shape`` inputs.

    Priors are the head's own (one point per cell of every level, corner
    convention); predicted boxes lie around their prior, each side about
    3 strides away (log-normal); scores are uniform in (0, 1) over
    ``num_classes``; every image has ``num_gts`` random GT boxes.

    Returns:
        dict with ``priors`` (the head's ``Priors``: N points, anchors,
        (B, N) valid), ``gt`` (``PaddedGT``: (B, G) boxes, labels, valid),
        ``pred_scores`` (B, N, C) and ``pred_bboxes`` (B, N, 4).
    """
    g = torch.Generator().manual_seed(seed)
    priors = prior_inputs(
        featmap_sizes(shape, strides), strides, padded_shape(shape),
        batch_size, anchor_scale)
    points = priors.points
    N = points.size(0)
    sides = torch.exp(torch.randn(batch_size, N, 4, generator=g) * 0.5 +
                      math.log(3.0)) * priors.strides[None, :, None]
    pred_bboxes = torch.cat(
        [points - sides[..., :2], points + sides[..., 2:]], -1)
    gt_bboxes = torch.stack(
        [random_gt_boxes(num_gts, shape, g) for _ in range(batch_size)])
    gt_labels = torch.randint(
        0, num_classes, (batch_size, num_gts), generator=g)
    return dict(
        priors=type(priors)(*(v.to(device) if isinstance(v, Tensor) else v
                              for v in priors)),
        gt=padded_gts(gt_bboxes.to(device), gt_labels.to(device)),
        pred_scores=torch.rand(
            batch_size, N, num_classes, generator=g).to(device),
        pred_bboxes=pred_bboxes.to(device))


def detection_batch(batch_size: int,
                    shape: Tuple[int, int],
                    num_gts: int,
                    num_classes: int,
                    seed: int = 0) -> dict:
    """A batch in the form a dataloader gives ``model.train_step`` and
    ``test_step``: uint8 BGR images (3, H, W) and data samples with
    ``num_gts`` random GT boxes each, already at network scale."""
    g = torch.Generator().manual_seed(seed)
    h, w = shape
    inputs, samples = [], []
    for i in range(batch_size):
        inputs.append(
            torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g))
        sample = DetDataSample(
            metainfo=dict(
                img_id=i,
                img_shape=(h, w),
                ori_shape=(h, w),
                scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=random_gt_boxes(num_gts, shape, g),
            labels=torch.randint(0, num_classes, (num_gts, ), generator=g))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


# ---------------------------------------------------------------------- #
# Assignment
# ---------------------------------------------------------------------- #
def benchmark_assign(model: nn.Module,
                     num_gts: Sequence[int],
                     shape: Tuple[int, int],
                     batch_size: int,
                     min_run_time: float,
                     device: torch.device) -> List[dict]:
    """Time and peak memory of each of the head's assigners (as it builds
    them from the config) for each number of GTs, on the priors of its
    strides for ``shape``.

    ``buffers`` expresses the peak in (priors × GTs × images) float32
    buffers, the unit in which dense assigners' memory grows.
    """
    head = model.bbox_head
    assigners = head_assigners(model)
    rows = []
    for g in num_gts:
        inputs = assign_inputs(g, batch_size, shape, head.num_classes,
                               head.strides, head.anchor_scale, seed=g,
                               device=device)
        num_priors = inputs['priors'].points.size(0)
        for name, assigner in assigners.items():

            def call():
                return run_assigner(assigner, inputs)

            result = call()
            timing = time_call(call, min_run_time, f'{name}, {g} GTs')
            peak = peak_memory(call, device)
            rows.append(
                dict(
                    assigner=name,
                    num_gts=g,
                    num_priors=num_priors,
                    batch_size=batch_size,
                    positives=int(result.fg_mask.sum()),
                    **timing,
                    peak_mib=peak / MiB,
                    buffers=peak / (4.0 * num_priors * g * batch_size)))
    return rows


# ---------------------------------------------------------------------- #
# Training
# ---------------------------------------------------------------------- #
@contextmanager
def labelled(obj: object, method: str, label: str) -> Iterator[dict]:
    """Wrap ``obj.method`` (an instance attribute shadows the class's
    method) so that each call is a profiler region named ``label`` and its
    wall-clock time adds to the yielded dict's ``seconds``."""
    original = getattr(obj, method)
    spent = dict(seconds=0.0, calls=0)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        with record_function(label):
            out = original(*args, **kwargs)
        spent['seconds'] += time.perf_counter() - start
        spent['calls'] += 1
        return out

    setattr(obj, method, wrapper)
    try:
        yield spent
    finally:
        delattr(obj, method)


@contextmanager
def labelled_all(objs: Sequence[object], method: str,
                 label: str) -> Iterator[dict]:
    """:func:`labelled` for several objects at once; once the block has
    run, the yielded dict's ``seconds`` and ``calls`` add up all of
    them."""
    total = dict(seconds=0.0, calls=0)
    with ExitStack() as stack:
        spent = [
            stack.enter_context(labelled(obj, method, label)) for obj in objs
        ]
        yield total
        total.update(
            seconds=sum(s['seconds'] for s in spent),
            calls=sum(s['calls'] for s in spent))


def check_finite(log_vars: Dict[str, Tensor]) -> Dict[str, float]:
    values = {
        k: float(torch.as_tensor(v).detach())
        for k, v in log_vars.items()
    }
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(
            f'non-finite training losses {bad}: {values}')
    return values


def train_step_phases(model: nn.Module, data: dict,
                      optim_wrapper: OptimWrapper,
                      device: torch.device) -> Dict[str, float]:
    """One training step split into phases, in seconds (laps of
    ``time.perf_counter``, synchronised at each boundary).

    The head's outputs are cut from the graph and fed to its losses as
    leaves, so the backward of the losses (to the head's outputs) and the
    network's backward run as two calls; their sum is the ordinary
    backward. ``assignment`` is part of ``targets_losses_forward``.
    """
    times = {}
    synchronize(device)
    start = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal start
        synchronize(device)
        now = time.perf_counter()
        times[name] = now - start
        start = now

    data = model.data_preprocessor(data, True)
    lap('preprocess')
    with optim_wrapper.optim_context(model):
        # network(): backbone, neck and head, compiled when the model is.
        cls_scores, bbox_preds = model.network(data['inputs'])
    lap('network_forward')
    outputs = list(cls_scores) + list(bbox_preds)
    leaves = [o.detach().requires_grad_() for o in outputs]
    num_levels = len(cls_scores)
    with labelled_all(model_assigners(model), 'assign',
                      'assignment') as assignment:
        with optim_wrapper.optim_context(model):
            losses = head_losses(model, leaves[:num_levels],
                                 leaves[num_levels:], data['data_samples'])
            loss, log_vars = model.parse_losses(losses)
        lap('targets_losses_forward')
    times['assignment'] = assignment['seconds']
    check_finite(log_vars)
    loss.backward()
    lap('losses_backward')
    torch.autograd.backward(outputs, [leaf.grad for leaf in leaves])
    lap('network_backward')
    optim_wrapper.optimizer.step()
    optim_wrapper.optimizer.zero_grad()
    lap('optimizer')
    return times


# Profiler regions named by ``labelled_regions``.
REGION_LABELS = ('network', 'targets_losses', 'assignment',
                 'post_processing')


def profile_table(fn: Callable[[], object], device: torch.device,
                  row_limit: int) -> Tuple[str, List[dict], List[dict]]:
    """torch.profiler over one call: the table of the ops with the most
    self time, the same rows as dicts, and the total time of each region
    that ``labelled_regions`` names."""
    activities = [ProfilerActivity.CPU]
    sort_by = 'self_cpu_time_total'
    if device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
        sort_by = 'self_device_time_total'
    with profile(activities=activities) as prof:
        fn()
        synchronize(device)
    averages = prof.key_averages()
    table = averages.table(sort_by=sort_by, row_limit=row_limit)
    rows = sorted(averages, key=lambda e: -getattr(e, sort_by))[:row_limit]
    entries = [
        dict(
            name=e.key,
            self_cpu_ms=e.self_cpu_time_total / 1e3,
            cpu_total_ms=e.cpu_time_total / 1e3,
            calls=e.count) for e in rows
    ]
    # The labelled regions, whatever their self time.
    regions = [
        dict(name=e.key, cpu_total_ms=e.cpu_time_total / 1e3, calls=e.count)
        for e in averages if e.key in REGION_LABELS
    ]
    return table, entries, regions


def zero_lr(optim_wrapper: OptimWrapper) -> None:
    """The optimizer does all its work, but with lr 0 the weights stay as
    given: otherwise a few steps at full lr from random weights drive the
    scores to 0, and later steps assign no positives at all."""
    for group in optim_wrapper.optimizer.param_groups:
        group['lr'] = 0.0


def benchmark_train(model: nn.Module,
                    optim_wrapper: OptimWrapper,
                    batch_size: int,
                    shape: Tuple[int, int],
                    num_gts: int,
                    min_run_time: float,
                    phase_steps: int,
                    device: torch.device,
                    profile_rows: int = 0) -> dict:
    """Images per second of full training steps, the time of the first
    step (a compiled network compiles in it), the step's peak memory, the
    split of a step into phases (the median of ``phase_steps`` steps)
    and, with ``profile_rows``, the top entries of a profile of one step.
    The optimizer's lr is set to 0 (:func:`zero_lr`)."""
    model.train()
    zero_lr(optim_wrapper)
    data = detection_batch(batch_size, shape, num_gts,
                           model.bbox_head.num_classes)
    losses = {}

    def step():
        losses.update(check_finite(model.train_step(data, optim_wrapper)))

    # Timed on its own: a compiled network compiles here.
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    first_step_s = time.perf_counter() - start
    timing = time_call(step, min_run_time, 'train step')
    peak = peak_memory(step, device)
    phases = [
        train_step_phases(model, data, optim_wrapper, device)
        for _ in range(max(1, phase_steps))
    ]
    phase_ms = {
        k: 1e3 * statistics.median(p[k] for p in phases)
        for k in phases[0]
    }
    step_ms = sum(v for k, v in phase_ms.items() if k != 'assignment')
    non_network = (phase_ms['targets_losses_forward'] +
                   phase_ms['losses_backward'])
    result = dict(
        batch_size=batch_size,
        shape=list(shape),
        num_gts=num_gts,
        optim_wrapper=type(optim_wrapper).__name__,
        **timing,
        images_per_s=batch_size / timing['median_ms'] * 1e3,
        first_step_s=first_step_s,
        peak_mib=peak / MiB,
        losses=losses,
        phases_ms=phase_ms,
        assignment_targets_losses_share=non_network / step_ms)
    if profile_rows:
        with labelled_regions(model):
            table, entries, regions = profile_table(step, device,
                                                    profile_rows)
        result.update(
            profile=entries, profile_regions=regions, profile_table=table)
    return result


def cycle(loader: Iterable) -> Iterator:
    """The batches of ``loader`` without end, epoch after epoch."""
    while True:
        yield from loader


def compare_train(variants: Dict[str, Tuple[nn.Module, OptimWrapper]],
                  batch_size: int,
                  shape: Tuple[int, int],
                  num_gts: int,
                  turns: int,
                  device: torch.device,
                  loaders: Optional[Dict[str, Iterable]] = None,
                  steps_per_turn: int = 1) -> Dict[str, dict]:
    """Full training steps of several (model, optimizer wrapper) variants of
    one config, timed in turns (:func:`time_in_turns`). Each result has the
    timing summary of one step, images/s, ``speed_up`` (the first
    variant's median step time over this one's), the first step's time
    and the step's peak memory. lr is set to 0 as in
    :func:`benchmark_train`.

    The first step of every variant is timed on its own, before the turns:
    for a model whose network is compiled (``--compile``) that is when it
    compiles, so ``first_step_s`` includes the compile time and
    ``compile_s`` (the first step less a median step) estimates it. For an
    eager variant ``compile_s`` is the first call's own overhead (oneDNN
    picking kernels, the allocator growing), a second or less.

    Without ``loaders`` every variant trains on the same synthetic batch.
    With them, each variant takes its batches (and batch size) from its own
    loader, so the time spent loading (in the main process, or waiting for
    workers) is part of the step. A turn is then ``steps_per_turn``
    consecutive timed steps (after the Timer's two untimed ones): a worker
    process fills its prefetch queue while the other variants run, and one
    step per turn would always find its batch ready.
    """
    data = None
    steps = {}
    for name, (model, optim_wrapper) in variants.items():
        model.train()
        zero_lr(optim_wrapper)
        if loaders is not None:
            batches = cycle(loaders[name])
            next_batch = (lambda b=batches: next(b))
        else:
            if data is None:
                data = detection_batch(batch_size, shape, num_gts,
                                       model.bbox_head.num_classes)
            next_batch = (lambda: data)

        def step(m=model, o=optim_wrapper, next_batch=next_batch):
            check_finite(m.train_step(next_batch(), o))

        steps[name] = step
    first_s = {}
    for name, step in steps.items():
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        first_s[name] = time.perf_counter() - start
    timings = time_in_turns(steps, turns, steps_per_turn)
    peaks = {name: peak_memory(step, device) for name, step in steps.items()}
    first = next(iter(timings.values()))['median_ms']
    return {
        name: dict(
            t,
            optim_wrapper=type(variants[name][1]).__name__,
            images_per_s=(loaders[name].batch_sampler.batch_size
                          if loaders is not None else batch_size) /
            t['median_ms'] * 1e3,
            speed_up=first / t['median_ms'],
            first_step_s=first_s[name],
            compile_s=max(0.0, first_s[name] - t['median_ms'] / 1e3),
            peak_mib=peaks[name] / MiB)
        for name, t in timings.items()
    }


def break_even_steps(eager: dict, compiled: dict) -> Optional[float]:
    """After how many training steps a compiled variant has made up for its
    compile time against its eager twin (results of
    :func:`compare_train`); None when it is not faster per step."""
    saved_s = (eager['median_ms'] - compiled['median_ms']) / 1e3
    if saved_s <= 0:
        return None
    return (compiled['compile_s'] - eager['compile_s']) / saved_s


# ---------------------------------------------------------------------- #
# Inference
# ---------------------------------------------------------------------- #
def inference_phases(model: nn.Module, data: dict,
                     device: torch.device) -> Dict[str, float]:
    """One ``test_step`` split into preprocessing, network and
    post-processing, in seconds (laps, as in :func:`train_step_phases`)."""
    times = {}
    synchronize(device)
    start = time.perf_counter()
    data = model.data_preprocessor(data, False)
    synchronize(device)
    times['preprocess'] = time.perf_counter() - start
    start = time.perf_counter()
    outs = model.network(data['inputs'])
    synchronize(device)
    times['network'] = time.perf_counter() - start
    start = time.perf_counter()
    head_predictions(model, *outs,
                     [s.metainfo for s in data['data_samples']])
    synchronize(device)
    times['post_processing'] = time.perf_counter() - start
    return times


def saturated_outputs(
        model: nn.Module,
        data: dict) -> Tuple[List[Tensor], List[Tensor], List[dict]]:
    """The head's outputs with uniform random scores in (0, 1): nearly
    every (prior, class) pair passes the score threshold, so every level
    fills ``nms_pre`` and NMS sees the most boxes it can. An upper bound
    on post-processing work, for models whose outputs (random weights,
    say) leave almost nothing above the threshold."""
    data = model.data_preprocessor(data, False)
    cls_scores, bbox_preds = model.network(data['inputs'])
    g = torch.Generator().manual_seed(0)
    cls_scores = [
        torch.rand(s.shape, generator=g).to(s.device) for s in cls_scores
    ]
    return cls_scores, bbox_preds, [s.metainfo for s in data['data_samples']]


def benchmark_inference(model: nn.Module,
                        batch_sizes: Sequence[int],
                        shape: Tuple[int, int],
                        min_run_time: float,
                        phase_steps: int,
                        device: torch.device,
                        autocast: Callable[[], object] = nullcontext,
                        profile_rows: int = 0) -> dict:
    """``test_step`` speed and peak memory per batch size; at batch 1 also
    the split into network and post-processing (the median of
    ``phase_steps`` steps), and post-processing alone on saturated scores
    (see :func:`saturated_outputs`)."""
    model.eval()
    rows = []
    extra = {}
    for batch_size in batch_sizes:
        data = detection_batch(batch_size, shape, 0,
                               model.bbox_head.num_classes)

        def step():
            with torch.no_grad(), autocast():
                return model.test_step(data)

        timing = time_call(step, min_run_time, f'test step, {batch_size}')
        peak = peak_memory(step, device)
        rows.append(
            dict(
                batch_size=batch_size,
                **timing,
                ms_per_image=timing['median_ms'] / batch_size,
                images_per_s=batch_size / timing['median_ms'] * 1e3,
                peak_mib=peak / MiB))
        if batch_size != 1:
            continue
        with torch.no_grad(), autocast():
            phases = [
                inference_phases(model, data, device)
                for _ in range(max(1, phase_steps))
            ]
            phase_ms = {
                k: 1e3 * statistics.median(p[k] for p in phases)
                for k in phases[0]
            }
            cls_scores, bbox_preds, metas = saturated_outputs(model, data)
            saturated = time_call(
                lambda: head_predictions(model, cls_scores, bbox_preds,
                                         metas), min_run_time,
                'saturated post-processing')
        total = sum(phase_ms.values())
        extra = dict(
            phases_ms=phase_ms,
            post_processing_share=phase_ms['post_processing'] / total,
            saturated_post_processing_ms=saturated['median_ms'],
            saturated_post_processing_share=saturated['median_ms'] /
            (total - phase_ms['post_processing'] + saturated['median_ms']))
        if profile_rows:
            with labelled_regions(model):
                table, entries, regions = profile_table(
                    step, device, profile_rows)
            extra.update(
                profile=entries, profile_regions=regions,
                profile_table=table)
    return dict(shape=list(shape), batches=rows, **extra)
