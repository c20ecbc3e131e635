import math

import pytest
import torch

from tood.models.losses import CrossEntropyLoss, DistributionFocalLoss
from tood.registry import MODELS

# Three bins (reg_max 2). Row 0: logits (0, log 2, 0) -> P = 1/4, 1/2, 1/4.
PRED = [[0.0, math.log(2), 0.0], [0.0, math.log(2), 0.0],
        [0.0, math.log(2), 0.0]]


def test_hand_computed_values():
    loss = DistributionFocalLoss()
    pred = torch.tensor(PRED)
    # y = 0.25: bins 0 and 1 with weights 0.75 and 0.25
    # y = 2 (= reg_max): all on bin 2; y = 1: all on bin 1
    target = torch.tensor([0.25, 2.0, 1.0])
    each = [
        -(0.75 * math.log(1 / 4) + 0.25 * math.log(1 / 2)),
        -math.log(1 / 4),
        -math.log(1 / 2),
    ]
    out = loss(pred, target, avg_factor=1.0)
    assert out.item() == pytest.approx(sum(each))
    # default: mean over sides; weights and avg_factor; loss_weight
    assert loss(pred, target).item() == pytest.approx(sum(each) / 3)
    weighted = MODELS.build(
        dict(type='DistributionFocalLoss', loss_weight=0.5))(
            pred, target, torch.tensor([1.0, 2.0, 0.0]), avg_factor=4.0)
    assert weighted.item() == pytest.approx(
        0.5 * (each[0] + 2 * each[1]) / 4)


def test_minimum_at_the_two_bin_split():
    # The loss over distributions is smallest at P(y_l) = y_r - y,
    # P(y_r) = y - y_l, where it equals their entropy.
    target = torch.tensor([0.25])
    best = torch.log(torch.tensor([[0.75, 0.25, 1e-12]]))
    best.requires_grad_()
    value = DistributionFocalLoss()(best, target)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert value.item() == pytest.approx(entropy, rel=1e-6)
    value.backward()
    assert best.grad.abs().max().item() < 1e-6
    other = torch.log(torch.tensor([[0.5, 0.5, 1e-12]]))
    assert DistributionFocalLoss()(other, target).item() > entropy


def test_gradient_flows_to_logits_only():
    pred = torch.tensor(PRED, requires_grad=True)
    DistributionFocalLoss()(pred, torch.tensor([0.5, 1.5, 0.0])).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_binary_cross_entropy_on_logits():
    loss = CrossEntropyLoss(use_sigmoid=True, loss_weight=2.0)
    pred = torch.tensor([0.0, math.log(3)])  # p = 0.5, 0.75
    target = torch.tensor([0.3, 1.0])
    each = [math.log(2), -math.log(0.75)]
    assert loss(pred, target).item() == pytest.approx(2 * sum(each) / 2)
    assert loss(pred, target, avg_factor=4.0).item() == pytest.approx(
        2 * sum(each) / 4)
    with pytest.raises(ValueError):
        CrossEntropyLoss(use_sigmoid=False)
