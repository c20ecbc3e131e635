import math

import pytest
import torch
from mmengine.structures import InstanceData

from tood.models.heads.gfl_head import Integral
from tood.models.task_modules import (ATSSAssigner, Priors, decode_level,
                                     grid_points, square_anchors)
from tood.registry import MODELS
from tood.structures import DetDataSample, PaddedGT, box_iou

STRIDES = (8, 16, 32)
SIZE = 128
SIZES = [(SIZE // s, SIZE // s) for s in STRIDES]
R = 16


def make_head(**kwargs):
    cfg = dict(
        type='GFLHead',
        num_classes=3,
        in_channels=8,
        feat_channels=16,
        stacked_convs=2,
        strides=STRIDES,
        reg_max=R,
        norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
        train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9)),
        test_cfg=dict(score_thr=0.05, nms=dict(iou_threshold=0.6)))
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def sample(gt_boxes, labels):
    s = DetDataSample(
        metainfo=dict(
            img_shape=(SIZE, SIZE),
            ori_shape=(SIZE, SIZE),
            pad_shape=(SIZE, SIZE),
            batch_input_shape=(SIZE, SIZE),
            scale_factor=(1.0, 1.0)))
    s.gt_instances = InstanceData(
        bboxes=torch.tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long))
    return s


def to_levels(flat):
    """(N, C) in prior order -> per level (1, C, H, W)."""
    out, start = [], 0
    for h, w in SIZES:
        out.append(flat[start:start + h * w].T.reshape(1, -1, h, w))
        start += h * w
    return out


def num_priors():
    return sum(h * w for h, w in SIZES)


# ---------------------------------------------------------------- Integral


def test_integral_hand_examples():
    integral = Integral(reg_max=2)
    big = 1e4
    sides = torch.tensor([
        [0.0, 0.0, 0.0],  # uniform over 0, 1, 2: mean 1
        [0.0, 0.0, big],  # all mass on 2
        [math.log(3), 0.0, -big],  # P = 3/4, 1/4, 0: mean 0.25
        [0.0, math.log(2), 0.0],  # P = 1/4, 1/2, 1/4: mean 1
    ])
    out = integral(sides.reshape(1, 12))
    assert out.shape == (1, 4)
    torch.testing.assert_close(out, torch.tensor([[1.0, 2.0, 0.25, 1.0]]))
    # leading dimensions pass through
    assert integral(torch.zeros(2, 5, 3, 12)).shape == (2, 5, 3, 4)
    # saved with the weights under MMDetection's name
    assert 'project' in integral.state_dict()


# ---------------------------------------------------------------- head


def test_module_names_and_output_shapes():
    head = make_head()
    names = set(head.state_dict())
    assert {'cls_convs.0.conv.weight', 'reg_convs.1.gn.bias',
            'gfl_cls.weight', 'gfl_reg.weight', 'scales.0.scale',
            'integral.project'} <= names
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 8, h, w, generator=g) for h, w in SIZES]
    cls, reg, dist = head(feats)
    for (h, w), c, r, d in zip(SIZES, cls, reg, dist):
        assert c.shape == (2, 3, h, w)
        assert r.shape == (2, 4, h, w)
        assert d.shape == (2, 4 * (R + 1), h, w)


def test_paper_size_parameter_count():
    head = MODELS.build(dict(type='GFLHead', num_classes=80,
                             in_channels=256))
    n = sum(p.numel() for p in head.parameters())
    tower = 4 * (256 * 256 * 9 + 2 * 256)
    outputs = (256 * 9 + 1) * (80 + 4 * 17)
    assert n == 2 * tower + outputs + 5


def with_boxes(head, distributions):
    """The head's (boxes, distributions) outputs for per-level (1, 4·(R+1),
    H, W) distribution logits."""
    boxes = [
        decode_level(head.integral(d.permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
                     'anchor_free') for d in distributions
    ]
    return boxes, distributions


def test_uniform_distributions_give_boxes_of_8_strides():
    head = make_head()
    torch.nn.init.zeros_(head.gfl_reg.weight)
    torch.nn.init.zeros_(head.gfl_reg.bias)
    _, boxes, _ = head.forward_single(torch.randn(1, 8, 2, 3),
                                      head.scales[0])
    # mean distance 8 strides on every side of the point (j, i) = (2, 1)
    assert boxes[0, :, 1, 2].tolist() == pytest.approx([-6, -7, 10, 9])


GT = [0.0, 0.0, 128.0, 128.0]


def atss_positives():
    points, strides = grid_points(SIZES, STRIDES, torch.device('cpu'))
    priors = Priors(points, strides, square_anchors(points, strides, 8),
                    tuple(SIZES), torch.ones(1, len(points), dtype=torch.bool))
    gt = PaddedGT(torch.tensor([[GT]]), torch.zeros(1, 1, dtype=torch.long),
                  torch.ones(1, 1, dtype=torch.bool))
    assign = ATSSAssigner(topk=9).assign(priors, gt)
    return points, strides, assign.fg_mask[0]


def exact_distributions():
    """Distributions peaked on each prior's integer distances to GT."""
    points, strides, _ = atss_positives()
    gt = torch.tensor(GT)
    sides = torch.cat([points - gt[:2], gt[2:] - points], -1)
    sides = (sides / strides[:, None]).round().long().clamp(0, R)
    logits = torch.nn.functional.one_hot(sides, R + 1).float() * 50
    return to_levels(logits.reshape(-1, 4 * (R + 1)))


def test_loss_of_an_exact_prediction():
    head = make_head()
    cls = to_levels(torch.zeros(num_priors(), 3))
    losses = head.loss_by_feat(cls, *with_boxes(head, exact_distributions()),
                               [sample(GT, [1])])
    # boxes equal to the GT and their distributions on the right bins
    assert losses['loss_bbox'].item() == pytest.approx(0, abs=1e-5)
    assert losses['loss_dfl'].item() == pytest.approx(0, abs=1e-5)
    # QFL at p = 0.5: BCE(0.5, 1)·0.5² at the positives (IoU target 1),
    # BCE(0.5, 0)·0.5² elsewhere: log(2) / 4 per element, over positives
    _, _, fg = atss_positives()
    expected = num_priors() * 3 * math.log(2) / 4 / int(fg.sum())
    assert losses['loss_cls'].item() == pytest.approx(expected, rel=1e-5)


def test_dfl_of_uniform_distributions():
    head = make_head()
    cls = to_levels(torch.zeros(num_priors(), 3))
    reg = to_levels(torch.zeros(num_priors(), 4 * (R + 1)))
    losses = head.loss_by_feat(cls, *with_boxes(head, reg), [sample(GT, [0])])
    # -(w_l + w_r) log(1/17) on every side; equal weights: weight 0.25
    assert losses['loss_dfl'].item() == pytest.approx(
        0.25 * math.log(R + 1), rel=1e-5)


def test_quality_target_is_the_iou():
    head = make_head()
    cls = to_levels(torch.zeros(num_priors(), 3))
    reg = to_levels(torch.zeros(num_priors(), 4 * (R + 1)))
    losses = head.loss_by_feat(cls, *with_boxes(head, reg), [sample(GT, [1])])
    # uniform distributions: each positive predicts its point ± 8 strides
    points, strides, fg = atss_positives()
    half = 8 * strides[fg, None]
    boxes = torch.cat([points[fg] - half, points[fg] + half], -1)
    iou = box_iou(boxes, torch.tensor(GT))
    assert (iou < 1).all()
    p = torch.tensor(0.5)
    bce = -(iou * p.log() + (1 - iou) * (1 - p).log())
    neg = math.log(2) / 4
    total = (bce * (iou - p)**2).sum() + (num_priors() * 3 - fg.sum()) * neg
    assert losses['loss_cls'].item() == pytest.approx(
        (total / fg.sum()).item(), rel=1e-5)


def test_no_gts_and_gradients():
    head = make_head()
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 8, h, w, generator=g) for h, w in SIZES]
    empty = head.loss([f[:1] for f in feats], [sample([], [])])
    assert empty['loss_bbox'].item() == 0 and empty['loss_dfl'].item() == 0
    sum(empty.values()).backward()
    assert all(p.grad is not None for p in head.parameters())
    head.zero_grad(set_to_none=True)
    losses = head.loss(feats, [sample([GT], [0]), sample([[8, 8, 60, 70]],
                                                         [2])])
    for v in losses.values():
        assert torch.isfinite(v) and v.item() > 0
    sum(losses.values()).backward()
    for n, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n


def test_predict_uses_the_class_probability():
    head = make_head()
    cls = to_levels(torch.full((num_priors(), 3), math.log(0.3 / 0.7)))
    results = head.predict_by_feat(cls,
                                   *with_boxes(head, exact_distributions()),
                                   [sample(GT, [0]).metainfo])
    r = results[0]
    # every box is the GT: one detection per class survives NMS
    assert len(r) == 3
    assert r.scores.tolist() == pytest.approx([0.3] * 3)
    torch.testing.assert_close(r.bboxes, torch.tensor([GT] * 3))
