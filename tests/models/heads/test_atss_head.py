import math

import pytest
import torch
from mmengine.structures import InstanceData

from tood.models.task_modules import (ATSSAssigner, Priors, decode_level,
                                     grid_points, square_anchors)
from tood.registry import MODELS
from tood.structures import DetDataSample, PaddedGT, centerness

STRIDES = (8, 16, 32)
SIZE = 128
TEST_CFG = dict(
    nms_pre=1000,
    score_thr=0.05,
    nms=dict(type='nms', iou_threshold=0.6),
    max_per_img=100)


def make_head(**kwargs):
    cfg = dict(
        type='ATSSHead',
        num_classes=3,
        in_channels=8,
        feat_channels=16,
        stacked_convs=2,
        strides=STRIDES,
        norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
        train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9)),
        test_cfg=TEST_CFG)
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def feats(batch=2):
    g = torch.Generator().manual_seed(0)
    return [
        torch.randn(batch, 8, SIZE // s, SIZE // s, generator=g)
        for s in STRIDES
    ]


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


GT = [[16.0, 24.0, 88.0, 80.0]]


def test_module_names_and_output_shapes():
    head = make_head()
    names = {n for n, _ in head.named_parameters()}
    # MMDetection 3's names, so converted checkpoints load.
    assert {'cls_convs.0.conv.weight', 'cls_convs.1.gn.weight',
            'reg_convs.1.conv.weight', 'atss_cls.weight', 'atss_reg.bias',
            'atss_centerness.weight', 'scales.2.scale'} <= names
    cls, reg, ctr = head(feats())
    for s, c, r, t in zip(STRIDES, cls, reg, ctr):
        n = SIZE // s
        assert c.shape == (2, 3, n, n)
        assert r.shape == (2, 4, n, n)
        assert t.shape == (2, 1, n, n)
    # focal-loss prior: sigmoid(bias) = 0.01
    assert torch.sigmoid(head.atss_cls.bias).allclose(torch.tensor(0.01))


def test_paper_size_parameter_count():
    head = MODELS.build(dict(type='ATSSHead', num_classes=80,
                             in_channels=256))
    n = sum(p.numel() for p in head.parameters())
    # 2 towers x 4 x (3x3 256->256 + GN) + cls/reg/centerness convs + scales
    tower = 4 * (256 * 256 * 9 + 2 * 256)
    outputs = (256 * 9 + 1) * (80 + 4 + 1)
    assert n == 2 * tower + outputs + 5


def test_zero_deltas_give_the_anchor():
    head = make_head()
    torch.nn.init.zeros_(head.atss_reg.weight)
    torch.nn.init.zeros_(head.atss_reg.bias)
    _, boxes, _ = head.forward_single(torch.randn(1, 8, 2, 3),
                                      head.scales[0])
    # anchor of side 8 strides centred on the prior point (j, i)
    assert boxes[0, :, 1, 2].tolist() == [2 - 4, 1 - 4, 2 + 4, 1 + 4]


SIZES = [(SIZE // s, SIZE // s) for s in STRIDES]


def encode(box):
    """(N, 4) deltas of every prior's anchor towards ``box`` (pixels)."""
    points, strides = grid_points(SIZES, STRIDES, torch.device('cpu'))
    anchors = square_anchors(points, strides, 8)
    side = anchors[:, 2] - anchors[:, 0]
    box = torch.tensor(box)
    return torch.stack([
        ((box[0] + box[2]) / 2 - points[:, 0]) / side / 0.1,
        ((box[1] + box[3]) / 2 - points[:, 1]) / side / 0.1,
        torch.log((box[2] - box[0]) / side) / 0.2,
        torch.log((box[3] - box[1]) / side) / 0.2
    ], -1)


def boxes_of(deltas):
    """Per level (1, 4, H, W) deltas -> the boxes the head outputs."""
    return [decode_level(d, 'anchor_based', 8) for d in deltas]


def to_levels(flat):
    """(N, C) in prior order -> per level (1, C, H, W)."""
    out, start = [], 0
    for h, w in SIZES:
        level = flat[start:start + h * w]
        out.append(level.T.reshape(1, -1, h, w).contiguous())
        start += h * w
    return out


def atss_positives(gt):
    points, strides = grid_points(SIZES, STRIDES, torch.device('cpu'))
    priors = Priors(points, strides, square_anchors(points, strides, 8),
                    tuple(SIZES), torch.ones(1, len(points), dtype=torch.bool))
    padded = PaddedGT(torch.tensor([[gt]]),
                      torch.zeros(1, 1, dtype=torch.long),
                      torch.ones(1, 1, dtype=torch.bool))
    assign = ATSSAssigner(topk=9).assign(priors, padded)
    return points, assign.fg_mask[0]


def zeros(channels):
    return to_levels(torch.zeros(sum(h * w for h, w in SIZES), channels))


def test_loss_on_hand_made_outputs():
    head = make_head()
    losses = head.loss_by_feat(zeros(3), boxes_of(to_levels(encode(GT[0]))),
                               zeros(1),
                               [sample(GT, [2])])
    # every positive box is the GT: GIoU loss 0
    assert losses['loss_bbox'].item() == pytest.approx(0, abs=1e-5)
    # centerness logit 0: BCE = log 2 whatever the target, averaged over
    # the positives
    assert losses['loss_centerness'].item() == pytest.approx(math.log(2))

    # focal loss at p = 0.5 everywhere, normalised by the positives
    points, fg = atss_positives(GT[0])
    num_pos = int(fg.sum())
    assert num_pos > 0
    neg = 0.75 * 0.25 * math.log(2)  # (1 - alpha) p^2 (-log(1 - p))
    pos = 0.25 * 0.25 * math.log(2)
    total = num_pos * pos + (len(points) * 3 - num_pos) * neg
    assert losses['loss_cls'].item() == pytest.approx(total / num_pos,
                                                      rel=1e-5)


def test_bbox_loss_weighted_by_centerness():
    head = make_head()
    points, fg = atss_positives(GT[0])
    first = int(fg.nonzero()[0])
    deltas = encode(GT[0])
    # one positive predicts the GT shifted 8 px right: IoU = GIoU = 0.8
    # (72x56 boxes overlapping 64x56; the enclosing box is their union)
    shifted = [GT[0][0] + 8, GT[0][1], GT[0][2] + 8, GT[0][3]]
    deltas[first] = encode(shifted)[first]
    losses = head.loss_by_feat(zeros(3), boxes_of(to_levels(deltas)), zeros(1),
                               [sample(GT, [0])])
    weights = centerness(points[fg], torch.tensor(GT[0]))
    w_first = centerness(points[first], torch.tensor(GT[0]))
    expected = 2.0 * w_first * (1 - 0.8) / weights.sum()
    assert losses['loss_bbox'].item() == pytest.approx(expected.item(),
                                                       rel=1e-4)


def test_no_gts_keeps_every_parameter_in_the_graph():
    head = make_head()
    empty = sample([], [])
    losses = head.loss(feats(1), [empty])
    assert losses['loss_cls'].item() > 0
    assert losses['loss_bbox'].item() == 0
    assert losses['loss_centerness'].item() == 0
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in head.parameters())


def test_gradients_with_gts():
    head = make_head()
    losses = head.loss(feats(2), [sample(GT, [1]), sample(GT * 2, [0, 2])])
    for v in losses.values():
        assert torch.isfinite(v) and v.item() > 0
    sum(losses.values()).backward()
    for n, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n


def logit(p):
    return math.log(p / (1 - p))


def test_predict_score_is_geometric_mean_with_centerness():
    head = make_head()
    reg = boxes_of(to_levels(encode(GT[0])))
    cls = [torch.full_like(c, logit(0.64)) for c in zeros(3)]
    ctr = [torch.full_like(c, logit(0.25)) for c in zeros(1)]
    result = head.predict_by_feat(cls, reg, ctr, [sample(GT, [0]).metainfo])
    r = result[0]
    # every box is the GT: NMS keeps one per class
    assert len(r) == 3
    assert r.scores.tolist() == pytest.approx([0.4] * 3)
    torch.testing.assert_close(r.bboxes, torch.tensor(GT * 3))
    # the threshold applies to the class probability alone
    ctr = [torch.full_like(c, logit(1e-4)) for c in ctr]
    r = head.predict_by_feat(cls, reg, ctr, [sample(GT, [0]).metainfo])[0]
    assert len(r) == 3 and (r.scores < 0.05).all()
    cls = [torch.full_like(c, logit(0.04)) for c in cls]
    r = head.predict_by_feat(cls, reg, ctr, [sample(GT, [0]).metainfo])[0]
    assert len(r) == 0


def test_centerness_target_matches_definition():
    # the centre of a box has centerness 1, a point a quarter across 0.577
    box = torch.tensor([[0.0, 0.0, 40.0, 40.0]])
    assert centerness(torch.tensor([[20.0, 20.0]]), box).item() == 1
    c = centerness(torch.tensor([[10.0, 20.0]]), box).item()
    assert c == pytest.approx(math.sqrt(10 / 30))
