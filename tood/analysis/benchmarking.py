"""Speed and memory of TOOD: what the measuring tools share
(``tools/analysis/benchmark.py``, ``tools/deployment/benchmark_onnx.py``,
``tools/analysis/gpu_checks.py``).

**Time** is measured with ``torch.utils.benchmark.Timer``, which
synchronises the accelerator around each timed block and runs the
statement with a fixed number of threads (ours: torch's current setting).
One function alone is timed by ``Timer.blocked_autorange`` (warm-up runs,
then blocks of runs until ``min_run_time`` seconds are spent); several
that are compared are timed in turns by ``Timer.timeit`` (each turn times
every function: two untimed runs, then the timed ones), the order reversed
every other turn, so that drift in the machine's speed affects them alike.
Results give the median, the interquartile range and the extremes over the
blocks or turns.

**Phases** of a step are the regions the library labels
(``tood.models.profiling``: network, losses, assignment,
post-processing) and two that torch labels itself (the backward pass,
``autograd::engine::evaluate_function: ...``, and the optimizer,
``Optimizer.step#...`` and ``Optimizer.zero_grad#...``), read back from
``torch.profiler`` over a few steps: CPU time on the CPU, the time of the
kernels each region launched on CUDA. ``other`` is the rest of the step
(preprocessing, parsing the losses, the profiler's own cost).

**Peak memory** is the most that torch's allocator holds during a call
beyond what it held when the call began (weights, optimizer state and
inputs are not counted). On CUDA it comes from the caching allocator's
statistics; on the CPU the call runs once more under ``torch.profiler``
with ``profile_memory=True``, which reports every allocation and free of
torch's CPU allocator, and the peak is the largest running sum.

Synthetic inputs (``assign_inputs``, ``detection_batch``) make runs
comparable between machines and code versions: the same seed gives the
same tensors. Shapes: B images, N priors, K classes, G GT boxes.
"""
import math
import os
import platform
import time
from collections import defaultdict
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from mmengine.logging import MessageHub
from mmengine.structures import InstanceData
from torch import Tensor, nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.benchmark import Measurement, Timer

from tood.models import profiling
from tood.models.task_modules import make_priors
from tood.structures import DetDataSample, PaddedGT

MiB = 1024.0**2
# Profiler event names (by prefix) -> phase.
PHASES = {
    profiling.NETWORK: 'network', profiling.LOSSES: 'losses',
    profiling.ASSIGN: 'assignment', profiling.POSTPROCESS: 'post_processing',
    'autograd::engine::evaluate_function': 'backward',
    'Optimizer.': 'optimizer'}
STEP = 'benchmark.step'


# ---------------------------------------------------------------------- #
# Time, phases, memory
# ---------------------------------------------------------------------- #
def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def make_timer(fn: Callable[[], object], label: str = '') -> Timer:
    return Timer(stmt='fn()', globals=dict(fn=fn), label=label,
                 num_threads=torch.get_num_threads())


def summarise(measurement: Measurement) -> Dict[str, float]:
    """Median and spread of a measurement in ms; ``repeats`` counts its
    blocks (or turns), ``runs_per_repeat`` the runs each averaged."""
    times = measurement.times
    return dict(median_ms=measurement.median * 1e3,
                iqr_ms=measurement.iqr * 1e3, min_ms=min(times) * 1e3,
                max_ms=max(times) * 1e3, repeats=len(times),
                runs_per_repeat=measurement.number_per_run)


def time_call(fn: Callable[[], object],
              min_run_time: float) -> Dict[str, float]:
    """``fn``'s time per call, blocks of runs for ``min_run_time`` s."""
    return summarise(
        make_timer(fn).blocked_autorange(min_run_time=min_run_time))


def time_in_turns(fns: Dict[str, Callable[[], object]],
                  turns: int) -> Dict[str, Measurement]:
    """Each function's per-run times, timed in turns (module docstring);
    ``times[i]`` of every result belongs to turn ``i``."""
    timers = {name: make_timer(fn, name) for name, fn in fns.items()}
    measured: Dict[str, List[Measurement]] = {name: [] for name in fns}
    for turn in range(turns):
        order = list(timers) if turn % 2 == 0 else list(timers)[::-1]
        for name in order:
            measured[name].append(timers[name].timeit(1))
    return {name: Measurement.merge(ms)[0] for name, ms in measured.items()}


def time_first(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call, timed alone: the first call of a compiled
    network compiles it."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def profile_phases(fn: Callable[[], object], steps: int,
                   device: torch.device) -> Dict[str, float]:
    """Milliseconds per call of ``fn`` in each phase (module docstring),
    ``other`` and the whole ``step``, over ``steps`` profiled calls."""
    on_cuda = device.type == 'cuda'
    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if on_cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            with record_function(STEP):
                fn()
        synchronize(device)
    totals: Dict[str, float] = defaultdict(float)
    # The CPU-side events; on CUDA each holds the kernels it launched.
    for e in (e for e in prof.key_averages()
              if e.device_type == DeviceType.CPU):
        us = e.device_time_total if on_cuda else e.cpu_time_total
        for prefix, phase in PHASES.items():
            totals[phase] += us if e.key.startswith(prefix) else 0.0
        # On CUDA the backward launches its kernels from a thread of its
        # own, outside the step's region: the step is every kernel.
        totals['step'] += (e.self_device_time_total if on_cuda else
                           us if e.key == STEP else 0.0)
    ms = {k: v / 1e3 / steps for k, v in totals.items()
          if v or k == 'step'}
    step = ms.pop('step')
    # Assignment runs inside the losses: not subtracted twice.
    ms['other'] = step - sum(v for k, v in ms.items() if k != 'assignment')
    ms['step'] = step
    return ms


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Bytes torch allocates during ``fn`` at its peak beyond what it held
    when ``fn`` began (module docstring)."""
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
    if os.path.isfile('/proc/cpuinfo'):  # Linux: the model's name
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name')), cpu)
    return dict(
        cpu=cpu, cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(), torch=torch.__version__,
        python=platform.python_version(), device=str(device),
        gpu=torch.cuda.get_device_name(device)
        if device.type == 'cuda' else None,
        load_average=[round(x, 2) for x in os.getloadavg()])


def format_table(columns: Dict[str, str], rows: List[dict]) -> str:
    """``rows`` under ``columns`` (header: key), right-aligned, floats with
    two decimals."""
    cells = [list(columns)] + [[
        f'{r[k]:.2f}' if isinstance(r[k], float) else str(r[k])
        for k in columns.values()] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ['  '.join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


# ---------------------------------------------------------------------- #
# Training state
# ---------------------------------------------------------------------- #
def enter_task_aligned_phase(model: nn.Module) -> None:
    """Make the head train as after the ATSS warm-up (task-aligned
    assignment), the steady state a benchmark times: its criterion reads
    the epoch and iteration from mmengine's message hub, as a runner's
    train loop keeps them. A hub of our own is made current, so that what
    an earlier runner in this process left there does not count. Heads
    without a warm-up are left as they are."""
    criterion = model.bbox_head.criterion
    hub = MessageHub.get_instance(f'tood-benchmark-{time.perf_counter_ns()}')
    hub.update_info('epoch', getattr(criterion, 'initial_epoch', 0))
    hub.update_info('iter', getattr(criterion, 'initial_iter', None) or 0)


def check_finite(log_vars: Dict[str, Tensor]) -> Dict[str, float]:
    """The losses of a training step as numbers; raises on NaN or inf."""
    values = {k: float(torch.as_tensor(v).detach())
              for k, v in log_vars.items()}
    if not all(map(math.isfinite, values.values())):
        raise FloatingPointError(f'non-finite losses: {values}')
    return values


# ---------------------------------------------------------------------- #
# Synthetic inputs
# ---------------------------------------------------------------------- #
def random_gt_boxes(num: int, shape: Tuple[int, int],
                    generator: torch.Generator) -> Tensor:
    """(num, 4) boxes inside an image of ``shape`` (H, W), sides between 8
    and 512 pixels (log-uniform, like the spread of sizes in COCO)."""
    h, w = shape
    sides = torch.exp(torch.empty(num, 2).uniform_(
        math.log(8), math.log(512), generator=generator))
    centres = torch.rand(num, 2, generator=generator) * torch.tensor(
        [float(w), float(h)])
    boxes = torch.cat([centres - sides / 2, centres + sides / 2], -1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    return boxes


def assign_inputs(num_gts: int, batch_size: int, shape: Tuple[int, int],
                  num_classes: int, strides: Sequence[int],
                  anchor_scale: float, seed: int,
                  device: torch.device) -> dict:
    """What a criterion hands its assigner for a batch of ``shape``
    inputs: ``priors`` (the head's, for the padded input: N points), ``gt``
    (``PaddedGT``, G random boxes per image), ``pred_scores`` (B, N, K)
    uniform in (0, 1) and ``pred_bboxes`` (B, N, 4) around their prior,
    each side about 3 strides away (log-normal)."""
    g = torch.Generator().manual_seed(seed)
    pad = tuple(math.ceil(size / 32) * 32 for size in shape)
    metas = [DetDataSample(metainfo=dict(pad_shape=pad,
                                         batch_input_shape=pad))
             for _ in range(batch_size)]
    # Feature maps of a stride-2 ResNet/FPN: P3-P5 divide the padded size
    # exactly, each extra level halves it, rounding up.
    sizes = [(math.ceil(pad[0] / s), math.ceil(pad[1] / s)) for s in strides]
    priors = make_priors(sizes, strides, anchor_scale, metas,
                         torch.device('cpu'))
    points = priors.points
    sides = torch.exp(
        torch.randn(batch_size, points.size(0), 4, generator=g) * 0.5 +
        math.log(3.0)) * priors.strides[None, :, None]
    pred_bboxes = torch.cat(
        [points - sides[..., :2], points + sides[..., 2:]], -1)
    gt_bboxes = torch.stack(
        [random_gt_boxes(num_gts, shape, g) for _ in range(batch_size)])
    gt_labels = torch.randint(0, num_classes, (batch_size, num_gts),
                              generator=g)
    return dict(
        priors=type(priors)(*(v.to(device) if isinstance(v, Tensor) else v
                              for v in priors)),
        gt=PaddedGT(gt_bboxes.to(device), gt_labels.to(device),
                    torch.ones(gt_labels.shape, dtype=torch.bool,
                               device=device)),
        pred_scores=torch.rand(batch_size, points.size(0), num_classes,
                               generator=g).to(device),
        pred_bboxes=pred_bboxes.to(device))


def detection_batch(batch_size: int, shape: Tuple[int, int], num_gts: int,
                    num_classes: int, seed: int = 0) -> dict:
    """A batch as a dataloader gives ``train_step`` and ``test_step``:
    (3, H, W) uint8 BGR images and data samples with ``num_gts`` random GT
    boxes each, at network scale."""
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for i in range(batch_size):
        inputs.append(torch.randint(0, 256, (3, *shape), dtype=torch.uint8,
                                    generator=g))
        samples.append(DetDataSample(
            metainfo=dict(img_id=i, img_shape=shape, ori_shape=shape,
                          scale_factor=(1.0, 1.0)),
            gt_instances=InstanceData(
                bboxes=random_gt_boxes(num_gts, shape, g),
                labels=torch.randint(0, num_classes, (num_gts, ),
                                     generator=g))))
    return dict(inputs=inputs, data_samples=samples)
