"""Speed and memory of TOOD: the measurements behind
``tools/analysis/benchmark.py``.

Three tasks, each on synthetic inputs of a chosen size, so that runs are
comparable between machines and with other toolboxes at identical
settings:

* ``benchmark_train``: full training steps (data preprocessor, forward,
  losses, backward, optimizer step) with the config's optimizer wrapper,
  mixed precision included; plus a split of one step into network forward,
  label assignment and losses, their backward, the network's backward and
  the optimizer step; ``compare_train`` times variants of a config in
  turns and gives their speed-ups;
* ``benchmark_inference``: ``test_step`` at batch 1 and larger batches,
  and the post-processing (score filter, top-k, NMS, rescale) alone;
* ``benchmark_assign``: one assigner on the priors of one input size and a
  given number of random GT boxes per image.

Times are wall-clock seconds of repeated runs after warm-up runs; each
result carries the median, the interquartile range and the extremes.

Peak memory is the largest amount of memory that torch's allocator holds
during a call beyond what it held when the call began (weights, optimizer
state and inputs are not counted). On CUDA it comes from the caching
allocator's statistics. On the CPU, ``tracemalloc`` and the process RSS
cannot see it (torch allocates outside Python's allocator, and freed
blocks stay in the process), so the call runs once more under
``torch.profiler`` with ``profile_memory=True``, which reports every
allocation and free of torch's CPU allocator with a timestamp; the peak is
the largest running sum of those sizes.
"""
import math
import os
import platform
import time
from contextlib import contextmanager, nullcontext
from typing import (Callable, Dict, Iterable, Iterator, List, Optional,
                    Sequence, Tuple)

import torch
from mmengine.optim import OptimWrapper
from mmengine.structures import InstanceData
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile, record_function

from tood.models.heads.priors import (grid_priors, square_anchors,
                                      valid_prior_mask)
from tood.structures import DetDataSample

MiB = 1024.0**2


# ---------------------------------------------------------------------- #
# Timing and memory
# ---------------------------------------------------------------------- #
def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock times are complete."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def summarise(seconds: Sequence[float]) -> Dict[str, float]:
    """Median and spread of repeated timings, in milliseconds."""
    ms = sorted(s * 1e3 for s in seconds)
    n = len(ms)

    def quantile(q: float) -> float:
        pos = q * (n - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return ms[lo] + (ms[hi] - ms[lo]) * (pos - lo)

    return dict(
        median_ms=quantile(0.5),
        iqr_ms=quantile(0.75) - quantile(0.25),
        min_ms=ms[0],
        max_ms=ms[-1],
        repeats=n)


def time_calls(fn: Callable[[], object], warmup: int, iters: int,
               device: torch.device) -> Dict[str, float]:
    """Run ``fn`` ``warmup`` times, then time ``iters`` runs."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    seconds = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return summarise(seconds)


def time_in_turns(fns: Dict[str, Callable[[], object]], warmup: int,
                  iters: int,
                  device: torch.device) -> Dict[str, Dict[str, float]]:
    """``time_calls`` for several functions run in turns (each round runs
    every function once), so that a change of machine load during the run
    slows them alike and their ratio stays fair."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    seconds: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    return {name: summarise(s) for name, s in seconds.items()}


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
        dict with ``pred_scores`` (B, N, C), ``pred_bboxes`` (B, N, 4),
        ``points`` (N, 2), ``anchors`` (N, 4), ``num_level_priors``,
        ``gt_bboxes`` (B, G, 4), ``gt_labels`` (B, G), ``gt_valid`` (B, G),
        ``prior_valid`` (B, N).
    """
    g = torch.Generator().manual_seed(seed)
    sizes = featmap_sizes(shape, strides)
    points, prior_strides = grid_priors(sizes, strides, torch.device('cpu'))
    N = points.size(0)
    sides = torch.exp(torch.randn(batch_size, N, 4, generator=g) * 0.5 +
                      math.log(3.0)) * prior_strides[None, :, None]
    pred_bboxes = torch.cat(
        [points - sides[..., :2], points + sides[..., 2:]], -1)
    gt_bboxes = torch.stack(
        [random_gt_boxes(num_gts, shape, g) for _ in range(batch_size)])
    inputs = dict(
        pred_scores=torch.rand(batch_size, N, num_classes, generator=g),
        pred_bboxes=pred_bboxes,
        points=points,
        anchors=square_anchors(points, prior_strides, anchor_scale),
        gt_bboxes=gt_bboxes,
        gt_labels=torch.randint(
            0, num_classes, (batch_size, num_gts), generator=g),
        gt_valid=torch.ones(batch_size, num_gts, dtype=torch.bool),
        prior_valid=valid_prior_mask(sizes, strides,
                                     [padded_shape(shape)] * batch_size,
                                     torch.device('cpu')))
    inputs = {
        k: v.to(device) if isinstance(v, Tensor) else v
        for k, v in inputs.items()
    }
    inputs['num_level_priors'] = [h * w for h, w in sizes]
    return inputs


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
def run_assigner(assigner, inputs: dict, alpha: float = 1.0,
                 beta: float = 6.0):
    """Call a TaskAlignedAssigner or ATSSAssigner on ``assign_inputs``."""
    if type(assigner).__name__ == 'ATSSAssigner':
        return assigner.assign(inputs['anchors'], inputs['num_level_priors'],
                               inputs['gt_bboxes'], inputs['gt_valid'],
                               inputs['prior_valid'])
    return assigner.assign(inputs['pred_scores'], inputs['pred_bboxes'],
                           inputs['points'], inputs['gt_bboxes'],
                           inputs['gt_labels'], inputs['gt_valid'],
                           inputs['prior_valid'], alpha, beta)


def benchmark_assign(assigners: Dict[str, object],
                     num_gts: Sequence[int],
                     shape: Tuple[int, int],
                     batch_size: int,
                     num_classes: int,
                     strides: Sequence[int],
                     anchor_scale: float,
                     alpha: float,
                     beta: float,
                     warmup: int,
                     iters: int,
                     device: torch.device) -> List[dict]:
    """Time and peak memory of each assigner for each number of GTs.

    ``buffers`` expresses the peak in (priors × GTs × images) float32
    buffers, the unit in which dense assigners' memory grows.
    """
    rows = []
    for g in num_gts:
        inputs = assign_inputs(g, batch_size, shape, num_classes, strides,
                               anchor_scale, seed=g, device=device)
        num_priors = inputs['points'].size(0)
        for name, assigner in assigners.items():

            def call():
                return run_assigner(assigner, inputs, alpha, beta)

            result = call()
            timing = time_calls(call, warmup, iters, device)
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
    """One training step split into phases, in seconds.

    The head's outputs are cut from the graph and fed to ``loss_by_feat``
    as leaves, so the backward of the losses (to the head's outputs) and
    the network's backward run as two calls; their sum is the ordinary
    backward. ``assignment`` is part of ``targets_losses_forward``.
    """
    head = model.bbox_head
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
        cls_scores, bbox_preds = head(model.extract_feat(data['inputs']))
    lap('network_forward')
    outputs = list(cls_scores) + list(bbox_preds)
    leaves = [o.detach().requires_grad_() for o in outputs]
    num_levels = len(cls_scores)
    with labelled(head.assigner, 'assign', 'assignment') as tal, \
            labelled(head.initial_assigner, 'assign', 'assignment') as atss:
        with optim_wrapper.optim_context(model):
            losses = head.loss_by_feat(leaves[:num_levels],
                                       leaves[num_levels:],
                                       data['data_samples'])
            loss, log_vars = model.parse_losses(losses)
        lap('targets_losses_forward')
    times['assignment'] = tal['seconds'] + atss['seconds']
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


@contextmanager
def labelled_regions(model: nn.Module) -> Iterator[None]:
    """Name the network, the losses (with the assignment inside) and the
    post-processing in profiles."""
    head = model.bbox_head
    with labelled(model, 'extract_feat', 'network'), \
            labelled(head, 'forward', 'network'), \
            labelled(head, 'loss_by_feat', 'targets_losses'), \
            labelled(head.assigner, 'assign', 'assignment') \
            if hasattr(head, 'assigner') else nullcontext(), \
            labelled(head, 'predict_by_feat', 'post_processing'):
        yield


def benchmark_train(model: nn.Module,
                    optim_wrapper: OptimWrapper,
                    batch_size: int,
                    shape: Tuple[int, int],
                    num_gts: int,
                    warmup: int,
                    iters: int,
                    device: torch.device,
                    profile_rows: int = 0) -> dict:
    """Images per second of full training steps, the step's peak memory,
    the split of a step into phases and, with ``profile_rows``, the top
    entries of a profile of one step. The optimizer's lr is set to 0."""
    head = model.bbox_head
    model.train()
    # The optimizer does all its work, but with lr 0 the weights stay as
    # given: otherwise a few steps at full lr from random weights drive
    # the scores to 0, and later steps assign no positives at all.
    for group in optim_wrapper.optimizer.param_groups:
        group['lr'] = 0.0
    data = detection_batch(batch_size, shape, num_gts, head.num_classes)
    losses = {}

    def step():
        losses.update(check_finite(model.train_step(data, optim_wrapper)))

    timing = time_calls(step, warmup, iters, device)
    peak = peak_memory(step, device)
    phases = [
        train_step_phases(model, data, optim_wrapper, device)
        for _ in range(max(1, iters))
    ]
    phase_ms = {
        k: summarise([p[k] for p in phases])['median_ms']
        for k in phases[0]
    }
    step_ms = sum(v for k, v in phase_ms.items() if k != 'assignment')
    non_network = (phase_ms['targets_losses_forward'] +
                   phase_ms['losses_backward'])
    result = dict(
        batch_size=batch_size,
        shape=list(shape),
        num_gts=num_gts,
        assigner=('initial' if head.epoch < head.initial_epoch else 'tal'),
        optim_wrapper=type(optim_wrapper).__name__,
        **timing,
        images_per_s=batch_size / timing['median_ms'] * 1e3,
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
                  batch_size: int, shape: Tuple[int, int], num_gts: int,
                  warmup: int, iters: int, device: torch.device,
                  loaders: Optional[Dict[str, Iterable]] = None,
                  steps_per_turn: int = 1) -> Dict[str, dict]:
    """Full training steps of several (model, optimizer wrapper) variants of
    one config, timed in turns (``time_in_turns``). Each result has the
    timing summary of one step, images/s and ``speed_up``: the first
    variant's median step time over this one's. lr is set to 0 as in
    ``benchmark_train``.

    Without ``loaders`` every variant trains on the same synthetic batch.
    With them, each variant takes its batches (and batch size) from its own
    loader, so the time spent loading (in the main process, or waiting for
    workers) is part of the step. A turn is then ``steps_per_turn`` consecutive steps:
    a worker process fills its prefetch queue while the other variants
    run, and one step per turn would always find its batch ready.
    """
    data = None
    steps = {}
    for name, (model, optim_wrapper) in variants.items():
        model.train()
        for group in optim_wrapper.optimizer.param_groups:
            group['lr'] = 0.0
        if loaders is not None:
            batches = cycle(loaders[name])
            next_batch = (lambda b=batches: next(b))
        else:
            if data is None:
                data = detection_batch(batch_size, shape, num_gts,
                                       model.bbox_head.num_classes)
            next_batch = (lambda: data)

        def turn(m=model, o=optim_wrapper, next_batch=next_batch):
            for _ in range(steps_per_turn):
                check_finite(m.train_step(next_batch(), o))

        steps[name] = turn
    timings = time_in_turns(steps, warmup, iters, device)
    timings = {
        name: {k: v / steps_per_turn if k.endswith('_ms') else v
               for k, v in t.items()}
        for name, t in timings.items()
    }
    first = next(iter(timings.values()))['median_ms']
    return {
        name: dict(
            t,
            optim_wrapper=type(variants[name][1]).__name__,
            images_per_s=(loaders[name].batch_sampler.batch_size
                          if loaders is not None
                          else batch_size) / t['median_ms'] * 1e3,
            speed_up=first / t['median_ms'])
        for name, t in timings.items()
    }


# ---------------------------------------------------------------------- #
# Inference
# ---------------------------------------------------------------------- #
def inference_phases(model: nn.Module, data: dict,
                     device: torch.device) -> Dict[str, float]:
    """One ``test_step`` split into preprocessing, network and
    post-processing, in seconds."""
    head = model.bbox_head
    times = {}
    synchronize(device)
    start = time.perf_counter()
    data = model.data_preprocessor(data, False)
    synchronize(device)
    times['preprocess'] = time.perf_counter() - start
    start = time.perf_counter()
    outs = head(model.extract_feat(data['inputs']))
    synchronize(device)
    times['network'] = time.perf_counter() - start
    start = time.perf_counter()
    head.predict_by_feat(*outs,
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
    cls_scores, bbox_preds = model.bbox_head(
        model.extract_feat(data['inputs']))
    g = torch.Generator().manual_seed(0)
    cls_scores = [
        torch.rand(s.shape, generator=g).to(s.device) for s in cls_scores
    ]
    return cls_scores, bbox_preds, [s.metainfo for s in data['data_samples']]


def benchmark_inference(model: nn.Module,
                        batch_sizes: Sequence[int],
                        shape: Tuple[int, int],
                        warmup: int,
                        iters: int,
                        device: torch.device,
                        autocast: Callable[[], object] = nullcontext,
                        profile_rows: int = 0) -> dict:
    """``test_step`` speed and peak memory per batch size; at batch 1 also
    the split into network and post-processing, and post-processing alone
    on saturated scores (see ``saturated_outputs``)."""
    head = model.bbox_head
    model.eval()
    rows = []
    extra = {}
    for batch_size in batch_sizes:
        data = detection_batch(batch_size, shape, 0, head.num_classes)

        def step():
            with torch.no_grad(), autocast():
                return model.test_step(data)

        timing = time_calls(step, warmup, iters, device)
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
                for _ in range(max(1, iters))
            ]
            phase_ms = {
                k: summarise([p[k] for p in phases])['median_ms']
                for k in phases[0]
            }
            cls_scores, bbox_preds, metas = saturated_outputs(model, data)
            saturated = time_calls(
                lambda: head.predict_by_feat(cls_scores, bbox_preds, metas),
                warmup, iters, device)
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
