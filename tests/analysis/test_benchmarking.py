"""tood.analysis.benchmarking: timing in turns, phases from the library's
profiler regions, peak memory, and synthetic inputs that are the same in
every run."""
import pytest
import torch
from torch.profiler import record_function
from torch.utils.benchmark.utils.common import Measurement, TaskSpec

from tood.analysis.benchmarking import (assign_inputs, detection_batch,
                                        format_table, peak_memory,
                                        profile_phases, summarise, time_call,
                                        time_in_turns)
from tood.models import profiling

CPU = torch.device('cpu')


def test_time_in_turns_reverses_the_order_every_other_turn():
    order = []
    measured = time_in_turns(
        {name: (lambda n=name: order.append(n)) for name in 'ab'}, turns=3)
    # Each turn: Timer.timeit runs the statement twice untimed, then once.
    assert order == ['a'] * 3 + ['b'] * 3 + ['b'] * 3 + ['a'] * 3 + \
        ['a'] * 3 + ['b'] * 3
    for m in measured.values():
        assert len(m.times) == 3 and m.number_per_run == 1


def test_time_call_runs_blocks_for_the_time_asked():
    calls = []
    timing = time_call(lambda: calls.append(1), min_run_time=0)
    # One warm-up block, one timed block.
    assert timing['repeats'] == 1 and len(calls) >= 2
    assert timing['median_ms'] == timing['min_ms'] == timing['max_ms']


def test_summarise():
    stats = summarise(Measurement(
        number_per_run=10, raw_times=[0.04, 0.01, 0.02, 0.03],
        task_spec=TaskSpec(stmt='fn()', setup='pass')))
    assert stats['median_ms'] == pytest.approx(2.5)
    assert stats['iqr_ms'] == pytest.approx(1.5)
    assert (stats['min_ms'], stats['max_ms']) == (pytest.approx(1),
                                                  pytest.approx(4))
    assert (stats['repeats'], stats['runs_per_repeat']) == (4, 10)


def work(n: int = 64) -> None:
    a = torch.rand(n, n)
    for _ in range(20):
        a = a @ a / n


def test_phases_are_the_library_regions_and_the_rest():
    def step():
        with record_function(profiling.NETWORK):
            work()
        with record_function(profiling.LOSSES):
            work()
            with record_function(profiling.ASSIGN):
                work()
        work()  # neither: 'other'

    phases = profile_phases(step, 2, CPU)
    assert list(phases) == ['network', 'losses', 'assignment', 'other',
                            'step']
    assert all(v > 0 for v in phases.values())
    # The assignment is part of the losses, counted once in the step.
    assert phases['assignment'] < phases['losses']
    assert phases['other'] == pytest.approx(
        phases['step'] - phases['network'] - phases['losses'])


def test_phases_of_backward_and_optimizer_are_torch_own_labels():
    weight = torch.nn.Parameter(torch.rand(64, 64))
    optimizer = torch.optim.SGD([weight], lr=0.0)

    def step():
        (weight @ weight).sum().backward()
        optimizer.step()
        optimizer.zero_grad()

    phases = profile_phases(step, 1, CPU)
    assert {'backward', 'optimizer'} <= set(phases)
    assert phases['backward'] + phases['optimizer'] < phases['step']


def test_peak_memory_counts_torch_allocations():
    def fn():
        a = torch.ones(2**20)  # 4 MiB
        b = torch.ones(2**21)  # 8 MiB, both alive
        del a
        c = torch.ones(2**20)  # back to 12 MiB
        return float(b.sum() + c.sum())

    assert 12 <= peak_memory(fn, CPU) / 2**20 < 12.5


def test_assign_inputs_are_the_same_for_a_seed():
    # A 64x96 input at strides 8..128: 8x12 + 4x6 + 2x3 + 1x2 + 1x1 priors.
    args = (5, 2, (64, 96), 3, (8, 16, 32, 64, 128), 8.0)
    first = assign_inputs(*args, seed=1, device=CPU)
    again = assign_inputs(*args, seed=1, device=CPU)
    other = assign_inputs(*args, seed=2, device=CPU)
    assert first['priors'].points.shape == (129, 2)
    assert first['gt'].bboxes.shape == (2, 5, 4) and first['gt'].valid.all()
    assert first['pred_scores'].shape == (2, 129, 3)
    assert first['pred_bboxes'].shape == (2, 129, 4)
    for key in ('pred_scores', 'pred_bboxes'):
        assert torch.equal(first[key], again[key])
        assert not torch.equal(first[key], other[key])
    assert torch.equal(first['gt'].bboxes, again['gt'].bboxes)
    boxes = first['gt'].bboxes
    assert (boxes[..., 2:] >= boxes[..., :2]).all()
    assert (boxes[..., 2] <= 96).all() and (boxes[..., 3] <= 64).all()


def test_detection_batch_is_what_a_dataloader_gives():
    data = detection_batch(2, (64, 96), 3, num_classes=5, seed=0)
    assert [tuple(i.shape) for i in data['inputs']] == [(3, 64, 96)] * 2
    assert data['inputs'][0].dtype == torch.uint8
    for sample in data['data_samples']:
        assert sample.img_shape == (64, 96)
        assert sample.gt_instances.bboxes.shape == (3, 4)
        assert (sample.gt_instances.labels < 5).all()
    again = detection_batch(2, (64, 96), 3, num_classes=5, seed=0)
    assert torch.equal(data['inputs'][1], again['inputs'][1])


def test_format_table_aligns_columns():
    text = format_table({'name': 'n', 'ms': 'v'},
                        [dict(n='a', v=1.5), dict(n='long', v=12.25)])
    assert text.splitlines() == [
        'name     ms', '----  -----', '   a   1.50', 'long  12.25']
