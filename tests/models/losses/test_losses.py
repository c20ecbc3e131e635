import math

import pytest
import torch

from tood.models.losses import FocalLoss, GIoULoss, QualityFocalLoss
from tood.registry import MODELS

# Two samples, three classes. Sample 0 is class 1, sample 1 background (3).
PROBS = [[0.2, 0.7, 0.1], [0.6, 0.3, 0.9]]
LABELS = [1, 3]


def probs(requires_grad=False):
    return torch.tensor(PROBS, requires_grad=requires_grad)


def labels():
    return torch.tensor(LABELS)


def logit(p):
    return math.log(p / (1 - p))


def hand_focal(alpha=0.25, gamma=2.0):
    """Elementwise focal loss of PROBS / LABELS, written out."""
    out = []
    for row, label in zip(PROBS, LABELS):
        out.append([
            -alpha * (1 - p)**gamma * math.log(p) if c == label else
            -(1 - alpha) * p**gamma * math.log(1 - p)
            for c, p in enumerate(row)
        ])
    return out


def hand_qfl(scores, beta=2.0):
    out = []
    for row, label, s in zip(PROBS, LABELS, scores):
        out.append([
            -(s * math.log(p) + (1 - s) * math.log(1 - p)) * abs(s - p)**beta
            if c == label else -math.log(1 - p) * p**beta
            for c, p in enumerate(row)
        ])
    return out


def test_focal_loss_hand_value():
    elems = hand_focal()
    # Sample 0, class 1: -0.25 * 0.3^2 * log 0.7 = 0.008025...
    assert elems[0][1] == pytest.approx(0.25 * 0.09 * -math.log(0.7))
    total = sum(map(sum, elems))
    loss = FocalLoss()(probs(), labels(), avg_factor=1.0)
    assert loss.item() == pytest.approx(total, rel=1e-5)
    # Mean over samples when avg_factor is None.
    assert FocalLoss()(probs(), labels()).item() == pytest.approx(
        total / 2, rel=1e-5)
    # Logits give the same as their probabilities.
    logits = torch.tensor([[logit(p) for p in row] for row in PROBS])
    loss = FocalLoss(activated=False)(logits, labels(), avg_factor=1.0)
    assert loss.item() == pytest.approx(total, rel=1e-5)
    # gamma and alpha are honoured.
    loss = FocalLoss(gamma=1.0, alpha=0.5)(probs(), labels(), avg_factor=1.0)
    assert loss.item() == pytest.approx(
        sum(map(sum, hand_focal(0.5, 1.0))), rel=1e-5)


def test_quality_focal_loss_hand_value():
    scores = [0.5, 0.0]
    elems = hand_qfl(scores)
    # Sample 0, class 1: BCE(0.7, 0.5) * 0.2^2.
    assert elems[0][1] == pytest.approx(
        -(0.5 * math.log(0.7) + 0.5 * math.log(0.3)) * 0.04)
    total = sum(map(sum, elems))
    target = (labels(), torch.tensor(scores))
    loss = QualityFocalLoss()(probs(), target, avg_factor=1.0)
    assert loss.item() == pytest.approx(total, rel=1e-5)
    logits = torch.tensor([[logit(p) for p in row] for row in PROBS])
    loss = QualityFocalLoss(activated=False)(logits, target, avg_factor=1.0)
    assert loss.item() == pytest.approx(total, rel=1e-5)
    loss = QualityFocalLoss(beta=1.0)(probs(), target, avg_factor=1.0)
    assert loss.item() == pytest.approx(
        sum(map(sum, hand_qfl(scores, 1.0))), rel=1e-5)


def test_quality_focal_loss_zero_when_target_equals_prediction():
    pred = torch.tensor([[0.0, 0.7, 0.0]], requires_grad=True)
    loss = QualityFocalLoss()(pred, (torch.tensor([1]), torch.tensor([0.7])),
                              avg_factor=1.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    loss.backward()
    assert pred.grad.abs().max().item() == pytest.approx(0.0, abs=1e-6)
    # A positive predicted above its target is pushed down.
    pred = torch.tensor([[0.0, 0.9, 0.0]], requires_grad=True)
    QualityFocalLoss()(pred, (torch.tensor([1]), torch.tensor([0.7]))
                       ).backward()
    assert pred.grad[0, 1] > 0


@pytest.mark.parametrize('loss_fn,target', [
    (FocalLoss(), torch.tensor([0, 1, 2])),
    (QualityFocalLoss(), (torch.tensor([0, 1, 2]), torch.tensor([1., 0.,
                                                                 0.]))),
])
def test_probability_losses_finite_at_zero_and_one(loss_fn, target):
    # Every combination of p in {0, 1} with a positive and a negative
    # target.
    pred = torch.tensor([[0., 1.], [1., 0.], [0., 0.]], requires_grad=True)
    loss = loss_fn(pred, target)
    assert torch.isfinite(loss)
    # Confidently wrong predictions cost the clamped log, not infinity.
    assert loss.item() > 10
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    # Confidently wrong predictions are pushed towards their targets: the
    # positive at p = 0 up, the negatives at p = 1 down.
    assert pred.grad[0, 0] < 0
    assert pred.grad[0, 1] > 0 and pred.grad[1, 0] > 0


def test_giou_loss_hand_value():
    pred = torch.tensor([[0., 0., 2., 2.], [0., 0., 1., 1.]])
    target = torch.tensor([[1., 1., 3., 3.], [2., 0., 3., 1.]])
    # Box 0: inter 1, union 7, enclosing 9: GIoU = 1/7 - 2/9.
    # Box 1: disjoint, union 2, enclosing 3: GIoU = -1/3.
    elems = [1 - (1 / 7 - 2 / 9), 1 + 1 / 3]
    loss = GIoULoss()(pred, target)
    assert loss.item() == pytest.approx(sum(elems) / 2, rel=1e-5)
    loss = GIoULoss(loss_weight=2.0)(pred, target,
                                     weight=torch.tensor([0.5, 2.0]),
                                     avg_factor=4.0)
    assert loss.item() == pytest.approx(
        2.0 * (0.5 * elems[0] + 2.0 * elems[1]) / 4.0, rel=1e-5)


def test_giou_loss_bounds():
    loss_fn = GIoULoss()
    box = torch.tensor([[1., 2., 5., 7.]])
    assert loss_fn(box, box.clone()).item() == pytest.approx(0.0, abs=1e-6)
    far = torch.tensor([[20., 20., 22., 22.]])
    assert loss_fn(box, far).item() > 1
    # A predicted box with x1 > x2 and y1 > y2 counts as empty.
    inverted = torch.tensor([[6., 8., 2., 3.], [3., 3., 2., 2.]],
                            requires_grad=True)
    targets = torch.tensor([[1., 2., 5., 7.], [0., 0., 4., 4.]])
    for i in range(2):
        loss = loss_fn(inverted[i:i + 1], targets[i:i + 1])
        assert 0 <= loss.item() <= 2
    loss_fn(inverted, targets).backward()
    assert torch.isfinite(inverted.grad).all()


def test_giou_loss_empty_keeps_graph():
    pred = torch.zeros(0, 4, requires_grad=True)
    loss = GIoULoss(loss_weight=2.0)(pred, torch.zeros(0, 4),
                                     weight=torch.zeros(0), avg_factor=1.0)
    assert loss.item() == 0 and loss.requires_grad
    loss.backward()
    assert pred.grad is not None and pred.grad.shape == (0, 4)


def test_weight_avg_factor_and_loss_weight():
    elems = torch.tensor(hand_focal())  # (2, 3)
    weight = torch.tensor([0.5, 3.0])
    loss = FocalLoss(loss_weight=2.0)(probs(), labels(), weight=weight,
                                      avg_factor=5.0)
    expected = 2.0 * (elems * weight[:, None]).sum() / 5.0
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # Per-element weights.
    weight = torch.tensor([[1., 0., 2.], [0., 1., 1.]])
    loss = FocalLoss()(probs(), labels(), weight=weight, avg_factor=1.0)
    assert loss.item() == pytest.approx((elems * weight).sum().item(),
                                        rel=1e-5)
    # A zero weight silences a sample in the quality focal loss too.
    target = (labels(), torch.tensor([0.5, 0.0]))
    qfl = torch.tensor(hand_qfl([0.5, 0.0]))
    loss = QualityFocalLoss(loss_weight=0.5)(
        probs(), target, weight=torch.tensor([0., 1.]), avg_factor=2.0)
    assert loss.item() == pytest.approx(0.5 * qfl[1].sum().item() / 2.0,
                                        rel=1e-5)
    # avg_factor may be a tensor.
    loss = FocalLoss()(probs(), labels(), avg_factor=torch.tensor(4.0))
    assert loss.item() == pytest.approx(elems.sum().item() / 4.0, rel=1e-5)


def test_losses_under_bf16_autocast():
    pred = probs().bfloat16().requires_grad_()
    boxes = torch.tensor([[0., 0., 2., 2.], [0., 0., 1., 1.]]).bfloat16()
    target_boxes = torch.tensor([[1., 1., 3., 3.], [2., 0., 3., 1.]])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        results = [
            FocalLoss()(pred, labels(), avg_factor=1.0),
            QualityFocalLoss()(pred, (labels(), torch.tensor(
                [0.5, 0.0]).bfloat16()), avg_factor=1.0),
            GIoULoss()(boxes.requires_grad_(), target_boxes.bfloat16()),
        ]
    for loss in results:
        assert loss.dtype == torch.float32
        assert torch.isfinite(loss)
    # Same value as float32 on the bf16-rounded inputs.
    expected = FocalLoss()(pred.detach().float(), labels(), avg_factor=1.0)
    torch.testing.assert_close(results[0], expected)
    sum(results).backward()
    assert torch.isfinite(pred.grad.float()).all()


def test_registered():
    for cfg in (dict(type='FocalLoss', gamma=2.0, alpha=0.25),
                dict(type='QualityFocalLoss', beta=2.0),
                dict(type='GIoULoss', loss_weight=2.0)):
        loss = MODELS.build(cfg)
        assert type(loss).__name__ == cfg['type']
