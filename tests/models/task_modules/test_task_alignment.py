"""The per-object alignment of a dense head's two tasks
(``task_modules/alignment.py``) on hand-built maps."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from tood.models.task_modules.alignment import (alignment_per_gt, pearson,
                                                spearman)

# Prior 0 lies outside the box (0, 0, 30, 30), the others inside.
POINTS = torch.tensor([[-5., -5.], [8., 4.], [16., 4.], [4., 12.],
                       [12., 12.]])
GT = torch.tensor([[0., 0., 30., 30.]])


def boxes_with_ious(ious):
    """Boxes (0, 0, 30, 30·u) of IoU u with ``GT``."""
    u = torch.tensor(ious)
    return torch.stack([u * 0, u * 0, u * 0 + 30, 30 * u], -1)


def test_best_priors_distance_and_correlations():
    # Prior 0's higher score and IoU must not count: it is not a candidate.
    scores = torch.tensor([[0.99], [0.2], [0.8], [0.1], [0.5]])
    boxes = boxes_with_ious([0.9, 0.3, 0.6, 0.1, 0.7])
    found = {k: v[0] for k, v in alignment_per_gt(
        scores, boxes, POINTS, GT, torch.tensor([0])).items()}
    assert found['num_candidates'] == 4
    assert found['best_score_index'] == 2
    assert found['best_iou_index'] == 4
    assert found['distance'] == pytest.approx(math.sqrt(4**2 + 8**2))
    assert not found['aligned']
    assert found['top_iou'] == pytest.approx(0.6)
    assert found['max_iou'] == pytest.approx(0.7)
    # Ranks (2, 4, 1, 3) vs (2, 3, 1, 4): 1 - 6 * 2 / (4 * 15) = 0.8.
    assert found['spearman'] == pytest.approx(0.8)
    expected = np.corrcoef([0.2, 0.8, 0.1, 0.5], [0.3, 0.6, 0.1, 0.7])[0, 1]
    assert found['pearson'] == pytest.approx(expected)


def test_aligned_constant_and_empty():
    scores = torch.tensor([[0.2], [0.8], [0.1], [0.5], [0.3]])
    boxes = boxes_with_ious([0.2, 0.8, 0.1, 0.5, 0.3])
    gt = torch.cat([GT, torch.tensor([[40., 40., 41., 41.]])])
    found = alignment_per_gt(scores, boxes, POINTS, gt,
                             torch.tensor([0, 0]))
    # One prior best at both: aligned, correlation 1.
    assert found['aligned'][0] and found['distance'][0] == 0
    assert found['spearman'][0] == pytest.approx(1.0)
    assert found['pearson'][0] == pytest.approx(1.0)
    # No candidate: nothing defined.
    assert found['num_candidates'][1] == 0 and found['best_iou_index'][1] == -1
    assert not found['aligned'][1]
    assert torch.isnan(found['distance'][1]) and torch.isnan(
        found['spearman'][1])
    # A constant map has no correlation.
    flat = alignment_per_gt(torch.full((5, 1), 0.3), boxes, POINTS, GT,
                            torch.tensor([0]))
    assert torch.isnan(flat['pearson'][0]) and torch.isnan(
        flat['spearman'][0])


def test_correlations_match_scipy():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(50, generator=g), torch.rand(50, generator=g)
    y = y + x
    assert float(pearson(x, y)) == pytest.approx(
        stats.pearsonr(x, y).statistic, rel=1e-6)
    assert float(spearman(x, y)) == pytest.approx(
        stats.spearmanr(x, y).statistic, rel=1e-6)
