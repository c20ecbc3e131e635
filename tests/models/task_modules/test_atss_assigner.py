import pytest
import torch

from tood.models.task_modules import AssignResult, ATSSAssigner, Priors
from tood.registry import TASK_UTILS
from tood.structures import PaddedGT, box_iou


def run(assigner, anchors, num_level_priors, gts, gt_valid, prior_valid):
    """The assigner on plain tensors: (N, 4) anchors, priors per level,
    (B, G, 4) GTs, (B, G) and (B, N) validity."""
    priors = Priors((anchors[:, :2] + anchors[:, 2:]) / 2,
                    torch.ones(anchors.size(0)), anchors,
                    tuple((1, n) for n in num_level_priors), prior_valid)
    labels = torch.zeros(gts.shape[:2], dtype=torch.long)
    return assigner.assign(priors, PaddedGT(gts, labels, gt_valid))


def grid_anchors(rows: int, cols: int, stride: float, size: float):
    """Square anchors centred at ((j + 0.5) * stride, (i + 0.5) * stride),
    row-major, so prior i * cols + j sits in row i, column j."""
    i, j = torch.meshgrid(
        torch.arange(rows, dtype=torch.float32),
        torch.arange(cols, dtype=torch.float32),
        indexing='ij')
    centres = torch.stack([(j.flatten() + 0.5) * stride,
                           (i.flatten() + 0.5) * stride], -1)
    return torch.cat([centres - size / 2, centres + size / 2], -1)


# Single level: 4x4 anchors of side 8, centres at 4, 12, 20, 28.
ANCHORS = grid_anchors(4, 4, 8., 8.)


def assign_one_level(gts, prior_valid=None, gt_valid=None, topk=9):
    gts = torch.tensor(gts, dtype=torch.float32)[None]
    if gt_valid is None:
        gt_valid = torch.ones(gts.shape[:2], dtype=torch.bool)
    if prior_valid is None:
        prior_valid = torch.ones(1, 16, dtype=torch.bool)
    return run(ATSSAssigner(topk), ANCHORS, [16], gts, gt_valid, prior_valid)


def positives(result, img=0):
    return {(p, g) for p, g in enumerate(result.gt_index[img].tolist())
            if g >= 0}


def test_one_gt_exact_positives():
    # GT centre (11, 10). Its 9 nearest anchor centres (squared distances
    # 5, 37, 53, 85, 85, 101, 117, 149, 181; the 10th is at 293) are
    # priors 5, 1, 4, 0, 6, 9, 2, 8, 10 with IoUs 64/324, 56/332, 48/340,
    # 42/346, 32/356, 24/364, 28/360, 18/370, 12/376: mean 0.105, std
    # 0.056, threshold 0.161. Priors 5 (0.198) and 1 (0.169) pass, and
    # their centres (12, 12), (12, 4) lie inside the GT.
    result = assign_one_level([[2., 1., 20., 19.]])
    assert isinstance(result, AssignResult)
    assert positives(result) == {(1, 0), (5, 0)}
    assert torch.equal(result.fg_mask, result.gt_index >= 0)
    assert result.overlaps[0, 5].item() == pytest.approx(64 / 324)
    assert result.overlaps[0, 1].item() == pytest.approx(56 / 332)
    assert result.overlaps[~result.fg_mask].abs().sum() == 0
    assert torch.equal(result.metrics, result.overlaps)


def test_only_the_best_candidate():
    # IoUs 64/143 for prior 0, then 40/167, 24/183, 15/192 and five zeros:
    # threshold 0.254, only prior 0 passes.
    result = assign_one_level([[0., 0., 13., 11.]])
    assert positives(result) == {(0, 0)}
    assert result.overlaps[0, 0].item() == pytest.approx(64 / 143)


def test_centre_must_be_inside_by_margin():
    # Prior 0 (IoU 0.67) and prior 1, centred on the GT's right side
    # (IoU 0.33), are candidates among 25 far anchors of IoU 0, so the
    # threshold is about 0.18 and prior 1 passes on IoU; it is positive
    # only once its centre is more than 0.01 px inside the GT.
    far = torch.tensor([[100., 100., 110., 110.]]) + torch.arange(
        25.)[:, None] * torch.tensor([10., 0., 10., 0.])
    anchors = torch.cat([torch.tensor([[-2., 0., 8., 10.],
                                       [5., 0., 15., 10.]]), far])
    assigner = ATSSAssigner(topk=27)
    for x2, expected in ((10.005, [0, -1]), (10.02, [0, 0])):
        result = run(assigner, anchors, [27],
                                 torch.tensor([[[0., 0., x2, 10.]]]),
                                 torch.ones(1, 1, dtype=torch.bool),
                                 torch.ones(1, 27, dtype=torch.bool))
        assert result.gt_index[0, :2].tolist() == expected
        assert (result.gt_index[0, 2:] == -1).all()


def test_gt_containing_no_anchor_centre_gets_nothing():
    # Between the centres 4 and 12 on both axes.
    result = assign_one_level([[5., 5., 11., 11.]])
    assert not result.fg_mask.any()
    assert (result.gt_index == -1).all()


def test_competing_gts_highest_iou_wins():
    # Alone, GT 0 takes priors 1 and 5 and GT 1 (centred on prior 5,
    # IoU 64/144) takes prior 5; prior 5 goes to GT 1 whatever the order.
    gt_a, gt_b = [2., 1., 20., 19.], [6., 6., 18., 18.]
    assert positives(assign_one_level([gt_b])) == {(5, 0)}
    result = assign_one_level([gt_a, gt_b])
    assert positives(result) == {(1, 0), (5, 1)}
    assert result.overlaps[0, 5].item() == pytest.approx(64 / 144)
    assert result.overlaps[0, 1].item() == pytest.approx(56 / 332)
    assert positives(assign_one_level([gt_b, gt_a])) == {(1, 1), (5, 0)}


def test_equal_iou_goes_to_lowest_gt_index():
    gt = [2., 1., 20., 19.]
    result = assign_one_level([gt, gt, gt])
    assert positives(result) == {(1, 0), (5, 0)}


def test_padded_gt_slots_are_ignored():
    # Slot 0 is padding holding a box that would win prior 5.
    result = assign_one_level([[6., 6., 18., 18.], [2., 1., 20., 19.]],
                              gt_valid=torch.tensor([[False, True]]))
    assert positives(result) == {(1, 1), (5, 1)}
    result = assign_one_level([[2., 1., 20., 19.]],
                              gt_valid=torch.tensor([[False]]))
    assert not result.fg_mask.any()


def test_invalid_priors_are_ignored():
    # Without prior 5 the candidates become 1, 4, 0, 6, 9, 2, 8, 10 and 7
    # (IoU 0): threshold 0.137, so priors 1 (0.169) and 4 (0.141) pass.
    prior_valid = torch.ones(1, 16, dtype=torch.bool)
    prior_valid[0, 5] = False
    result = assign_one_level([[2., 1., 20., 19.]], prior_valid=prior_valid)
    assert positives(result) == {(1, 0), (4, 0)}
    # No valid prior at all: nothing is assigned.
    result = assign_one_level([[2., 1., 20., 19.]],
                              prior_valid=torch.zeros(1, 16, dtype=bool))
    assert not result.fg_mask.any()


def test_topk_larger_than_level():
    # Level 0 has 3 priors (all candidates despite topk 9), level 1 has 1.
    # IoUs 1, 1/3, 0 and 0 (the level-1 anchor is far away): mean 1/3,
    # std 0.471, threshold 0.805: only prior 0.
    anchors = torch.tensor([[0., 0., 10., 10.], [5., 0., 15., 10.],
                            [20., 0., 30., 10.], [100., 100., 140., 140.]])
    gts = torch.tensor([[[0., 0., 10., 10.]]])
    result = run(ATSSAssigner(9), anchors, [3, 1], gts,
                                    torch.ones(1, 1, dtype=torch.bool),
                                    torch.ones(1, 4, dtype=torch.bool))
    assert result.gt_index.tolist() == [[0, -1, -1, -1]]
    # Prior 2 invalid: candidates IoU 1, 1/3, 0: mean 4/9, std 0.509,
    # threshold 0.953; a padded-in invalid candidate would change these.
    gts = torch.tensor([[[0., 0., 10., 10.], [4., 0., 16., 10.]]])
    prior_valid = torch.tensor([[True, True, False, True]])
    result = run(ATSSAssigner(9), anchors, [3, 1], gts,
                                    torch.ones(1, 2, dtype=torch.bool),
                                    prior_valid)
    assert result.gt_index.tolist() == [[0, 1, -1, -1]]


def test_no_gt_and_empty_batch_shapes():
    assigner = TASK_UTILS.build(dict(type='ATSSAssigner', topk=9))
    assert isinstance(assigner, ATSSAssigner)
    result = run(assigner, ANCHORS, [16], torch.zeros(2, 0, 4),
                             torch.zeros(2, 0, dtype=torch.bool),
                             torch.ones(2, 16, dtype=torch.bool))
    assert result.gt_index.shape == (2, 16)
    assert (result.gt_index == -1).all() and not result.fg_mask.any()
    assert result.overlaps.shape == result.metrics.shape == (2, 16)


def reference_atss(anchors, num_level_priors, gts, gt_valid, prior_valid,
                   topk=9):
    """Plain per-image, per-GT ATSS."""
    num_imgs, num_gts = gts.shape[:2]
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    gt_index = torch.full((num_imgs, len(anchors)), -1, dtype=torch.long)
    for b in range(num_imgs):
        best = torch.full((len(anchors), ), -1.)
        for g in range(num_gts):
            if not gt_valid[b, g]:
                continue
            gt = gts[b, g]
            gt_centre = (gt[:2] + gt[2:]) / 2
            cands = []
            start = 0
            for n in num_level_priors:
                valid = torch.nonzero(prior_valid[b, start:start + n])[:, 0]
                dist = (centres[start + valid] - gt_centre).pow(2).sum(-1)
                k = min(topk, len(valid))
                cands.append(start + valid[dist.topk(k, largest=False)[1]])
                start += n
            cands = torch.cat(cands)
            ious = box_iou(anchors[cands], gt[None])
            threshold = ious.mean() + (ious.std()
                                       if len(ious) > 1 else 0)
            for p, iou in zip(cands.tolist(), ious.tolist()):
                cx, cy = centres[p].tolist()
                inside = min(cx - gt[0], cy - gt[1], gt[2] - cx,
                             gt[3] - cy) > 0.01
                if iou >= threshold and inside and iou > best[p]:
                    best[p] = iou
                    gt_index[b, p] = g
    return gt_index


@pytest.mark.parametrize('seed', range(6))
def test_matches_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    # Corner-placed priors like TOOD's, anchors 8 x stride wide.
    levels = [(16, 16, 8.), (8, 8, 16.), (3, 3, 32.)]  # last one < topk
    anchors = []
    for rows, cols, stride in levels:
        a = grid_anchors(rows, cols, stride, 8 * stride)
        anchors.append(a - stride / 2)
    anchors = torch.cat(anchors)
    num_level_priors = [r * c for r, c, _ in levels]
    num_imgs = 2 + seed % 2
    num_gts = 7
    # Random boxes inside a 128 x 128 canvas.
    xy = torch.rand(num_imgs, num_gts, 2, generator=gen) * 100
    wh = torch.rand(num_imgs, num_gts, 2, generator=gen) * 60 + 4
    gts = torch.cat([xy, (xy + wh).clamp(max=128)], -1)
    # Different GT counts per image; the last image may have none.
    counts = torch.randint(0, num_gts + 1, (num_imgs, ), generator=gen)
    counts[0] = num_gts
    gt_valid = torch.arange(num_gts)[None] < counts[:, None]
    # Each image's own size limits its valid priors.
    sizes = torch.randint(40, 129, (num_imgs, 2), generator=gen).float()
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    prior_valid = ((centres[None, :, 0] < sizes[:, None, 0]) &
                   (centres[None, :, 1] < sizes[:, None, 1]))

    result = run(ATSSAssigner(9), anchors, num_level_priors, gts, gt_valid,
                 prior_valid)
    expected = reference_atss(anchors, num_level_priors, gts, gt_valid,
                              prior_valid)
    assert result.fg_mask.sum() > 0
    assert torch.equal(result.gt_index, expected)
    # Overlaps are the anchor IoUs of the assigned pairs.
    b, p = torch.nonzero(result.fg_mask, as_tuple=True)
    ious = box_iou(anchors[p], gts[b, result.gt_index[b, p]])
    torch.testing.assert_close(result.overlaps[b, p], ious)
