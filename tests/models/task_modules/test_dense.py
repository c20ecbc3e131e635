"""The assigners' private dense stages (``assigners/_dense.py``): the
in-place IoU, the two-stage top-k, chunking, and eq. (9) as the task-aligned
assigner evaluates it."""
import torch

from tood.models.task_modules import Priors, TaskAlignedAssigner
from tood.models.task_modules.assigners import _dense
from tood.models.task_modules.assigners.task_aligned_assigner import \
    alignment_metric
from tood.structures import PaddedGT, box_area, box_iou


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 4) boxes of 30-80 px in a 160x160 image."""
    xy = torch.rand(n, 2, generator=generator) * 100
    return torch.cat([xy, xy + torch.rand(n, 2, generator=generator) * 50 +
                      30], -1)


def test_iou_into_equals_box_iou_and_writes_into_out():
    g = torch.Generator().manual_seed(0)
    boxes, gts = random_boxes(50, g), random_boxes(7, g)[:, None]
    out, w, h = (torch.empty(7, 50) for _ in range(3))
    got = _dense.iou_into(gts, boxes.t().contiguous().t(), out, (w, h),
                          (box_area(gts), box_area(boxes)))
    assert got.data_ptr() == out.data_ptr()
    assert torch.equal(got, box_iou(gts, boxes))


def test_alignment_metric_is_eq_9():
    g = torch.Generator().manual_seed(0)
    s, u = torch.rand(100, generator=g), torch.rand(100, generator=g)
    for alpha, beta in ((1, 6), (0.5, 4), (1.5, 8), (2, 0.5)):
        torch.testing.assert_close(alignment_metric(s, u, alpha, beta),
                                   s**alpha * u**beta, rtol=1e-6, atol=0)


def test_topk_by_blocks_matches_topk():
    g = torch.Generator().manual_seed(0)
    values = torch.rand(5, 7 * 11, generator=g)
    values[1] = 0  # ties
    values[2, :70] = -1
    top, idx = _dense.topk_by_blocks(values, 6, 7)
    expected = values.topk(6, dim=-1).values
    assert torch.equal(top, expected)
    assert torch.equal(values.gather(1, idx), top)
    assert all(len(set(row.tolist())) == 6 for row in idx)


def assign_inputs(num_gts: int, batch_size: int, num_priors: int,
                  num_classes: int) -> tuple:
    g = torch.Generator().manual_seed(num_gts)
    side = int(num_priors**0.5)
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side),
                            indexing='ij')
    points = torch.stack([xs.flatten(), ys.flatten()], -1).float() * 8
    N = points.size(0)
    priors = Priors(points, torch.full((N, ), 8.), torch.zeros(N, 4),
                    ((side, side), ), torch.ones(batch_size, N, dtype=bool))
    gts = torch.stack([random_boxes(num_gts, g) for _ in range(batch_size)])
    gt = PaddedGT(gts, torch.randint(0, num_classes, (batch_size, num_gts),
                                     generator=g),
                  torch.ones(batch_size, num_gts, dtype=bool))
    scores = torch.rand(batch_size, N, num_classes, generator=g)
    boxes = torch.cat([points - 20, points + 20]).reshape(1, N, 4).repeat(
        batch_size, 1, 1) + torch.randn(batch_size, N, 4, generator=g) * 5
    return priors, gt, scores, boxes


def test_tal_chunks_give_the_same_assignment(monkeypatch):
    priors, gt, scores, boxes = assign_inputs(23, 2, 400, 5)
    gt.valid[1, 15:] = False
    priors.valid[1, -40:] = False
    for inside_first in (False, True):
        assigner = TaskAlignedAssigner(inside_first=inside_first)
        whole = assigner.assign(priors, gt, scores, boxes)
        # One GT row per chunk of the dense stage.
        with monkeypatch.context() as m:
            m.setattr(_dense, 'CPU_CHUNK', 1)
            chunked = assigner.assign(priors, gt, scores, boxes)
        assert whole.fg_mask.sum() > 20
        assert torch.equal(whole.gt_index, chunked.gt_index)
        assert torch.equal(whole.metrics, chunked.metrics)
        assert torch.equal(whole.overlaps, chunked.overlaps)


def test_dense_topk_calls_the_metric_it_is_given():
    """The kernel ranks by the metric it is handed: with a metric that
    ignores the scores, the top candidate of each GT is its best-IoU
    prior."""
    g = torch.Generator().manual_seed(1)
    boxes, gts = random_boxes(300, g), random_boxes(4, g)
    points = (boxes[:, :2] + boxes[:, 2:]) / 2
    values, idx = _dense.dense_topk(
        lambda s, u, out: out.copy_(u), torch.rand(300, 3, generator=g),
        boxes, points, gts, torch.tensor([0, 1, 2, 0]),
        torch.ones(300, dtype=bool), 5, False)
    assert torch.equal(idx[:, 0], box_iou(gts[:, None], boxes).argmax(1))
    torch.testing.assert_close(values[:, 0],
                               box_iou(gts[:, None], boxes).amax(1))
