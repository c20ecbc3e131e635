import pytest
import torch

from tood.models.task_modules import Priors, TaskAlignedAssigner
from tood.models.task_modules.assigners.task_aligned_assigner import \
    alignment_metric
from tood.registry import TASK_UTILS
from tood.structures import PaddedGT, box_iou


def run(assigner, scores, boxes, points, gts, labels, gt_valid, prior_valid):
    """The assigner on plain tensors: (B, N, C) scores, (B, N, 4) boxes,
    (N, 2) points, (B, G, 4) GTs, (B, G) labels and validity, (B, N) prior
    validity."""
    N = points.size(0)
    priors = Priors(points, torch.ones(N), torch.zeros(N, 4), ((1, N), ),
                    prior_valid)
    return assigner.assign(priors, PaddedGT(gts, labels, gt_valid), scores,
                           boxes)


def reference_assign(scores, boxes, points, gts, labels, prior_valid, topk,
                     alpha, beta, conflict='max_iou', eps=1e-7):
    """One image, one GT at a time, plain loops: the meaning of TAL."""
    N = scores.size(0)
    G = gts.size(0)
    gt_index = torch.full((N, ), -1, dtype=torch.long)
    if G == 0:
        return gt_index, torch.zeros(N), torch.zeros(N)
    t = torch.zeros(G, N)
    u = torch.zeros(G, N)
    claims = [[] for _ in range(N)]
    for g in range(G):
        iou_g = box_iou(gts[g][None], boxes)
        u[g] = iou_g
        t[g] = alignment_metric(scores[:, labels[g]], iou_g, alpha, beta)
        t_valid = torch.where(prior_valid, t[g], torch.tensor(-1.0))
        k = min(topk, N)
        order = sorted(range(N), key=lambda n: -float(t_valid[n]))[:k]
        for n in order:
            x, y = points[n].tolist()
            x1, y1, x2, y2 = gts[g].tolist()
            inside = min(x - x1, y - y1, x2 - x, y2 - y) > 0.01
            if t_valid[n] > 0 and inside:
                claims[n].append(g)
    for n in range(N):
        if not claims[n]:
            continue
        if conflict == 'max_iou':
            keys = [float(u[g, n]) for g in claims[n]]
        else:
            keys = [-float((gts[g, 2] - gts[g, 0]) * (gts[g, 3] - gts[g, 1]))
                    for g in claims[n]]
        best = max(keys)
        gt_index[n] = min(g for g, key in zip(claims[n], keys) if key == best)
    metric = torch.zeros(N)
    iou = torch.zeros(N)
    for g in range(G):
        pos = gt_index == g
        if pos.any():
            tg, ug = t[g, pos], u[g, pos]
            metric[pos] = tg / (tg.max() + eps) * ug.max()
            iou[pos] = ug
    return gt_index, metric, iou


def random_batch(seed, B=3, N=60, C=4, max_gts=5):
    g = torch.Generator().manual_seed(seed)
    side = 8
    ys, xs = torch.meshgrid(torch.arange(side) * 8.0, torch.arange(side) * 8.0,
                            indexing='ij')
    points = torch.stack([xs.flatten(), ys.flatten()], -1)[:N]
    N = points.size(0)
    scores = torch.rand(B, N, C, generator=g)
    wh = torch.rand(B, N, 2, generator=g) * 30 + 4
    boxes = torch.cat([points - wh / 2, points + wh / 2], -1)
    num_gts = torch.randint(0, max_gts + 1, (B, ), generator=g)
    num_gts[0] = max_gts
    G = int(num_gts.max())
    xy = torch.rand(B, G, 2, generator=g) * 50
    gwh = torch.rand(B, G, 2, generator=g) * 30 + 2
    gts = torch.cat([xy, xy + gwh], -1)
    labels = torch.randint(0, C, (B, G), generator=g)
    gt_valid = torch.arange(G)[None] < num_gts[:, None]
    prior_valid = torch.ones(B, N, dtype=torch.bool)
    prior_valid[1, -10:] = False
    return scores, boxes, points, gts, labels, gt_valid, prior_valid


@pytest.mark.parametrize('conflict', ['max_iou', 'min_area'])
@pytest.mark.parametrize('seed', range(6))
def test_batched_equals_reference(seed, conflict):
    scores, boxes, points, gts, labels, gt_valid, prior_valid = random_batch(
        seed)
    assigner = TaskAlignedAssigner(topk=7, alpha=1.0, beta=2.0,
                                   conflict=conflict)
    res = run(assigner, scores, boxes, points, gts, labels, gt_valid,
              prior_valid)
    for b in range(scores.size(0)):
        n = int(gt_valid[b].sum())
        ref_index, ref_metric, ref_iou = reference_assign(
            scores[b], boxes[b], points, gts[b, :n], labels[b, :n],
            prior_valid[b], 7, 1.0, 2.0, conflict)
        assert torch.equal(res.gt_index[b], ref_index)
        assert torch.equal(res.fg_mask[b], ref_index >= 0)
        torch.testing.assert_close(res.metrics[b], ref_metric)
        torch.testing.assert_close(res.overlaps[b], ref_iou)
    # the random cases must exercise positives in every image with GTs
    assert res.fg_mask[0].sum() > 0


def hand_case():
    # 3x3 grid of prior points at stride 10: (0,0) ... (20,20)
    ys, xs = torch.meshgrid(torch.arange(3) * 10.0, torch.arange(3) * 10.0,
                            indexing='ij')
    points = torch.stack([xs.flatten(), ys.flatten()], -1)
    boxes = torch.cat([points - 5, points + 5], -1)[None]  # (1, 9, 4)
    return points, boxes


def test_known_positives_and_normalisation():
    points, boxes = hand_case()
    scores = torch.full((1, 9, 2), 0.5)
    scores[0, 4, 1] = 0.9
    # GT around the centre prior (10, 10): box (5, 5, 15, 15) == prediction
    gts = torch.tensor([[[5.0, 5.0, 15.0, 15.0]]])
    labels = torch.tensor([[1]])
    res = run(TaskAlignedAssigner(topk=3, alpha=1, beta=6), scores, boxes,
              points, gts, labels, torch.ones(1, 1, dtype=bool),
              torch.ones(1, 9, dtype=bool))
    # Only the centre prior's point is strictly inside the GT.
    assert res.gt_index.tolist() == [[-1, -1, -1, -1, 0, -1, -1, -1, -1]]
    # single positive: t-hat = t / t * max IoU = IoU = 1
    assert res.metrics[0, 4].item() == pytest.approx(1.0, abs=1e-6)
    assert res.overlaps[0, 4].item() == pytest.approx(1.0)


def test_gt_without_prior_inside_gets_nothing():
    points, boxes = hand_case()
    scores = torch.full((1, 9, 1), 0.5)
    gts = torch.tensor([[[1.0, 1.0, 9.0, 9.0]]])  # contains no prior point
    res = run(TaskAlignedAssigner(topk=13), scores, boxes, points, gts,
              torch.zeros(1, 1, dtype=torch.long),
              torch.ones(1, 1, dtype=bool), torch.ones(1, 9, dtype=bool))
    assert not res.fg_mask.any()
    assert res.metrics.abs().sum() == 0


def test_conflict_max_iou_vs_min_area():
    points, boxes = hand_case()
    scores = torch.full((1, 9, 1), 0.5)
    big = [0.0, 0.0, 30.0, 30.0]  # contains every interior point
    small = [6.0, 6.0, 14.0, 14.0]  # only (10, 10); IoU with its box 0.64
    gts = torch.tensor([[big, small]])
    labels = torch.zeros(1, 2, dtype=torch.long)
    valid = torch.ones(1, 2, dtype=bool)
    pv = torch.ones(1, 9, dtype=bool)
    # make the big GT overlap the centre prediction more than the small one
    boxes = boxes.clone()
    boxes[0, 4] = torch.tensor([0.0, 0.0, 28.0, 28.0])
    by_iou = run(TaskAlignedAssigner(topk=9, beta=1, conflict='max_iou'),
                 scores, boxes, points, gts, labels, valid, pv)
    by_area = run(TaskAlignedAssigner(topk=9, beta=1, conflict='min_area'),
                  scores, boxes, points, gts, labels, valid, pv)
    assert by_iou.gt_index[0, 4].item() == 0
    assert by_area.gt_index[0, 4].item() == 1


def test_k_larger_than_priors_and_padded_slots():
    points, boxes = hand_case()
    scores = torch.full((2, 9, 1), 0.5)
    gts = torch.tensor([[[5.0, 5.0, 15.0, 15.0], [0, 0, 0, 0]],
                        [[5.0, 5.0, 15.0, 15.0], [5.0, 5.0, 15.0, 15.0]]])
    valid = torch.tensor([[True, False], [True, False]])
    res = run(TaskAlignedAssigner(topk=100), scores, boxes.expand(2, 9, 4),
              points, gts, torch.zeros(2, 2, dtype=torch.long), valid,
              torch.ones(2, 9, dtype=bool))
    # the padded slot of image 1 is a real-looking box and must be ignored
    assert res.gt_index.max().item() == 0
    assert res.fg_mask.sum(1).tolist() == [1, 1]


def test_invalid_priors_and_no_gts():
    points, boxes = hand_case()
    scores = torch.full((1, 9, 1), 0.5)
    gts = torch.tensor([[[5.0, 5.0, 15.0, 15.0]]])
    pv = torch.ones(1, 9, dtype=bool)
    pv[0, 4] = False
    assigner = TASK_UTILS.build(dict(type='TaskAlignedAssigner', topk=13))
    res = run(assigner, scores, boxes, points, gts,
              torch.zeros(1, 1, dtype=torch.long),
              torch.ones(1, 1, dtype=bool), pv)
    assert not res.fg_mask.any()
    res = run(assigner, scores, boxes, points, gts,
              torch.zeros(1, 1, dtype=torch.long),
              torch.zeros(1, 1, dtype=bool), torch.ones(1, 9, dtype=bool))
    assert not res.fg_mask.any()


def test_inside_first_picks_candidates_among_inside_priors():
    points, boxes = hand_case()
    boxes = boxes.clone()
    # prior 0 (0, 0) lies outside the GT but predicts it exactly, so it has
    # the largest t; only the centre prior (10, 10) lies inside.
    gts = torch.tensor([[[4.0, 4.0, 16.0, 16.0]]])
    boxes[0, 0] = gts[0, 0]
    scores = torch.full((1, 9, 1), 0.5)
    args = (scores, boxes, points, gts, torch.zeros(1, 1, dtype=torch.long),
            torch.ones(1, 1, dtype=bool), torch.ones(1, 9, dtype=bool))
    after = run(TaskAlignedAssigner(topk=1), *args)
    assert not after.fg_mask.any()
    before = run(TaskAlignedAssigner(topk=1, inside_first=True), *args)
    assert before.gt_index.tolist() == [[-1, -1, -1, -1, 0, -1, -1, -1, -1]]
    # with k covering every prior both orders agree
    wide = [run(TaskAlignedAssigner(topk=9, inside_first=f), *args)
            for f in (False, True)]
    assert torch.equal(wide[0].gt_index, wide[1].gt_index)


@pytest.mark.parametrize('seed', range(4))
def test_inside_first_equals_reference_on_inside_priors(seed):
    """With one GT per image, testing inside first is the reference TAL on
    the priors inside that GT."""
    scores, boxes, points, gts, labels, _, prior_valid = random_batch(
        seed, max_gts=1)
    gt_valid = torch.ones(gts.shape[:2], dtype=torch.bool)
    res = run(TaskAlignedAssigner(topk=5, alpha=1.0, beta=2.0,
                                  inside_first=True),
              scores, boxes, points, gts, labels, gt_valid, prior_valid)
    for b in range(scores.size(0)):
        x, y = points[:, 0], points[:, 1]
        x1, y1, x2, y2 = gts[b, 0]
        inside = torch.stack([x - x1, y - y1, x2 - x, y2 - y]).min(0).values
        ref_index, ref_metric, _ = reference_assign(
            scores[b], boxes[b], points, gts[b], labels[b],
            prior_valid[b] & (inside > 0.01), 5, 1.0, 2.0)
        assert torch.equal(res.gt_index[b], ref_index)
        torch.testing.assert_close(res.metrics[b], ref_metric)
    assert res.fg_mask.any()
