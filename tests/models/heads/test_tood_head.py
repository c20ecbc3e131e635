import math

import pytest
import torch
from mmengine.structures import InstanceData

from tood.models.heads.tood_head import (TOODHead, aligned_score,
                                         sample_box_sides)
from tood.registry import MODELS
from tood.structures import DetDataSample

TRAIN_CFG = dict(
    initial_epoch=4,
    initial_assigner=dict(type='ATSSAssigner', topk=9),
    assigner=dict(type='TaskAlignedAssigner', topk=13),
    alpha=1,
    beta=6)
TEST_CFG = dict(
    nms_pre=1000,
    score_thr=0.05,
    nms=dict(type='nms', iou_threshold=0.6),
    max_per_img=100)
STRIDES = (8, 16, 32)


def make_head(**kwargs):
    cfg = dict(
        type='TOODHead',
        num_classes=3,
        in_channels=16,
        feat_channels=32,
        stacked_convs=3,
        strides=STRIDES,
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
        train_cfg=TRAIN_CFG,
        test_cfg=TEST_CFG)
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def feats(batch=2, size=64, channels=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, channels, size // s, size // s, generator=g)
        for s in STRIDES
    ]


def samples(num_gts=(2, 0), size=64):
    out = []
    g = torch.Generator().manual_seed(1)
    for n in num_gts:
        s = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                pad_shape=(size, size),
                batch_input_shape=(size, size),
                scale_factor=(1.0, 1.0)))
        xy = torch.rand(n, 2, generator=g) * size / 2
        wh = torch.rand(n, 2, generator=g) * size / 2 + 12
        s.gt_instances = InstanceData(
            bboxes=torch.cat([xy, (xy + wh).clamp(max=size)], 1),
            labels=torch.randint(0, 3, (n, ), generator=g))
        out.append(s)
    return out


@pytest.mark.parametrize('anchor_type', ['anchor_free', 'anchor_based'])
@pytest.mark.parametrize('switch', [
    {}, dict(use_layer_attention=False), dict(use_cls_prob=False),
    dict(use_reg_offset=False), dict(num_dcn=2)
])
def test_output_shapes(anchor_type, switch):
    head = make_head(anchor_type=anchor_type, **switch)
    cls_scores, bbox_preds = head(feats())
    assert len(cls_scores) == len(bbox_preds) == len(STRIDES)
    for s, (c, b) in zip(STRIDES, zip(cls_scores, bbox_preds)):
        assert c.shape == (2, 3, 64 // s, 64 // s)
        assert b.shape == (2, 4, 64 // s, 64 // s)
        assert ((c >= 0) & (c <= 1)).all()
        # boxes never come out inverted
        assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()


def test_ablation_switches_remove_modules():
    head = make_head(
        use_layer_attention=False, use_cls_prob=False, use_reg_offset=False)
    names = [n for n, _ in head.named_modules()]
    assert not any('layer_attention' in n for n in names)
    assert not any('cls_prob_module' in n for n in names)
    assert not any('reg_offset_module' in n for n in names)


def test_paper_size_parameter_count():
    head = TOODHead(num_classes=80, in_channels=256)
    n = sum(p.numel() for p in head.parameters())
    # 4.82 M in the reference implementation
    assert abs(n - 4.82e6) < 0.01e6, n
    attention = head.cls_decomp.layer_attention
    assert attention[0].out_channels == 32 and attention[2].out_channels == 6


def test_init_biases():
    head = make_head()
    prior = -math.log(99)
    assert torch.allclose(head.tood_cls.bias, torch.full((3, ), prior))
    assert torch.allclose(head.cls_prob_module[2].bias,
                          torch.tensor([prior]))
    cls_scores, _ = head(feats())
    # P = sqrt(0.01 * 0.01) = 0.01 at initialisation
    assert cls_scores[0].mean().item() == pytest.approx(0.01, rel=0.2)


@pytest.mark.parametrize('anchor_type', ['anchor_free', 'anchor_based'])
@pytest.mark.parametrize('epoch', [0, 4])
def test_loss_with_and_without_gts(anchor_type, epoch, set_epoch):
    head = make_head(anchor_type=anchor_type)
    set_epoch(epoch)
    losses = head.loss(feats(), samples((3, 1)))
    assert losses['loss_cls'].item() > 0
    assert losses['loss_bbox'].item() > 0
    empty = head.loss(feats(), samples((0, 0)))
    assert empty['loss_cls'].item() > 0
    assert empty['loss_bbox'].item() == 0
    # Every parameter must still receive a gradient (DDP waits for them).
    (empty['loss_cls'] + empty['loss_bbox']).backward()
    no_grad = [
        n for n, p in head.named_parameters()
        if p.requires_grad and p.grad is None
    ]
    assert no_grad == []


def test_gradients_reach_every_parameter(set_epoch):
    head = make_head(num_dcn=1)
    for epoch in (0, 4):
        head.zero_grad(set_to_none=True)
        set_epoch(epoch)
        losses = head.loss(feats(), samples((3, 2)))
        sum(losses.values()).backward()
        for n, p in head.named_parameters():
            assert p.grad is not None, n
            assert torch.isfinite(p.grad).all(), n


def record_assigners(criterion):
    """The list to which each call of the criterion's ATSS warm-up
    assigner appends 'ATSS', and each call of its TAL assigner 'TAL'."""
    ran = []

    def recording(assign, label):

        def recorded(*args, **kwargs):
            ran.append(label)
            return assign(*args, **kwargs)

        return recorded

    criterion.initial_assigner.assign = recording(
        criterion.initial_assigner.assign, 'ATSS')
    criterion.assigner.assign = recording(criterion.assigner.assign, 'TAL')
    return ran


def test_warmup_switches_to_tal(set_epoch):
    head = make_head()
    ran = record_assigners(head.criterion)
    losses = {}
    # initial_epoch=4: epochs 0-3 warm up with ATSS, TAL from epoch 4.
    for epoch in (0, 3, 4, 5):
        set_epoch(epoch)
        losses[epoch] = head.loss(feats(), samples((3, 2)))
    assert ran == ['ATSS', 'ATSS', 'TAL', 'TAL']
    assert losses[0]['loss_cls'].item() != pytest.approx(
        losses[4]['loss_cls'].item())


def test_aligned_score_extreme_logits():
    cls = torch.tensor([-1000.0, -80.0, 0.0, 80.0, 1000.0], requires_grad=True)
    prob = torch.tensor([-1000.0, -90.0, 0.0, 90.0, 1000.0],
                        requires_grad=True)
    p = aligned_score(cls, prob)
    assert torch.isfinite(p).all()
    assert p[2].item() == pytest.approx(0.5)
    assert p[-1].item() == pytest.approx(1.0)
    p.sum().backward()
    assert torch.isfinite(cls.grad).all() and torch.isfinite(prob.grad).all()
    # the naive form gives NaN gradients where the product underflows
    cls2 = cls.detach().clone().requires_grad_()
    naive = (cls2.sigmoid() * prob.detach().sigmoid()).sqrt()
    naive.sum().backward()
    assert not torch.isfinite(cls2.grad).all()


def test_loss_finite_under_extreme_outputs(set_epoch):
    head = make_head()
    with torch.no_grad():
        head.tood_cls.bias.fill_(60.0)
        head.cls_prob_module[2].bias.fill_(-60.0)
    for epoch in (0, 4):
        set_epoch(epoch)
        losses = head.loss([f * 100 for f in feats()], samples((3, 2)))
        for v in losses.values():
            assert torch.isfinite(v)
        sum(losses.values()).backward()
        for n, p in head.named_parameters():
            assert p.grad is None or torch.isfinite(p.grad).all(), n


def test_sampling_zero_offsets_is_identity():
    boxes = torch.randn(2, 4, 5, 6)
    out = sample_box_sides(boxes, torch.zeros(2, 8, 5, 6))
    torch.testing.assert_close(out, boxes)


def test_sampling_matches_hand_bilinear():
    boxes = torch.arange(4 * 3 * 3, dtype=torch.float32).view(1, 4, 3, 3)
    offsets = torch.zeros(1, 8, 3, 3)
    # x1 (channel 0) at (0, 0) read at row 0.5, column 0.25
    offsets[0, 0, 0, 0] = 0.5
    offsets[0, 1, 0, 0] = 0.25
    # y2 (channel 3) at (2, 2) read one column to the right: outside -> 0
    offsets[0, 7, 2, 2] = 1.0
    # y1 (channel 1) at (1, 1) read at row 1 - 0.5, column 1 + 1.5
    offsets[0, 2, 1, 1] = -0.5
    offsets[0, 3, 1, 1] = 1.5
    out = sample_box_sides(boxes, offsets)
    m0 = boxes[0, 0]
    expected = (0.5 * 0.75 * m0[0, 0] + 0.5 * 0.25 * m0[0, 1] +
                0.5 * 0.75 * m0[1, 0] + 0.5 * 0.25 * m0[1, 1])
    assert out[0, 0, 0, 0].item() == pytest.approx(expected.item())
    assert out[0, 3, 2, 2].item() == 0
    m1 = boxes[0, 1]
    # column 2.5: half of it falls outside the map and reads zero
    expected = (0.5 * 0.5 * m1[0, 2] + 0.5 * 0.5 * m1[1, 2])
    assert out[0, 1, 1, 1].item() == pytest.approx(expected.item())
    # untouched locations are copied
    assert out[0, 2, 1, 0].item() == boxes[0, 2, 1, 0].item()


def test_inverted_boxes_fall_back_to_unsampled():
    head = make_head()
    with torch.no_grad():
        # offsets that swap the rows read for y1 and y2 by a lot
        head.reg_offset_module[2].bias.copy_(
            torch.tensor([0, 0, 3.0, 0, 0, 0, -3.0, 0]))
    _, bbox_preds = head(feats())
    for b in bbox_preds:
        assert (b[:, 3] >= b[:, 1]).all() and (b[:, 2] >= b[:, 0]).all()


def test_predict_rescales_and_clips():
    head = make_head()
    with torch.no_grad():
        head.tood_cls.bias.fill_(5.0)
        head.cls_prob_module[2].bias.fill_(5.0)
    data_samples = samples((0, 0))
    for s in data_samples:
        s.set_metainfo(dict(scale_factor=(0.5, 0.5), ori_shape=(128, 128)))
    results = head.predict(feats(), data_samples)
    assert len(results) == 2
    for r in results:
        assert 0 < len(r) <= 100
        assert r.bboxes.min() >= 0 and r.bboxes.max() <= 128
        assert (r.scores > 0.05).all()
        assert r.labels.max() < 3
        # sorted by score
        assert (r.scores[:-1] >= r.scores[1:]).all()


def test_hard_labels_train_positives_towards_one(set_epoch):
    from tood.models.losses import GIoULoss, QualityFocalLoss
    from tood.models.task_modules import levels_to_priors, make_priors
    from tood.structures import PaddedGT
    hard = make_head(train_cfg=dict(TRAIN_CFG, hard_labels=True))
    soft = make_head()
    soft.load_state_dict(hard.state_dict())
    set_epoch(4)
    data = samples((3, 2))
    cls_scores, bbox_preds = hard(feats())
    losses = hard.loss_by_feat(cls_scores, bbox_preds, data)

    # The same TAL positives, trained towards 1 with box weight 1, both
    # losses over the number of positives.
    priors = make_priors([s.shape[-2:] for s in cls_scores], STRIDES, 8,
                         data, torch.device('cpu'))
    scores = levels_to_priors(cls_scores)
    boxes = levels_to_priors(bbox_preds) * priors.strides[:, None]
    gt = PaddedGT.from_samples(data, torch.device('cpu'))
    assign = hard.criterion.assigner.assign(priors, gt, scores.detach(),
                                            boxes.detach())
    fg, valid = assign.fg_mask, priors.valid
    num_pos = fg.sum().float()
    assert num_pos > 0
    pick = assign.gt_index.clamp(min=0)
    cls_target = gt.labels.gather(1, pick).where(fg, 3)
    loss_cls = QualityFocalLoss()(
        scores[valid], (cls_target[valid], fg[valid].float()),
        avg_factor=num_pos)
    box_target = gt.bboxes.gather(1, pick[..., None].expand(-1, -1, 4))
    loss_bbox = GIoULoss(loss_weight=2.0)(
        boxes[fg], box_target[fg], avg_factor=num_pos)
    torch.testing.assert_close(losses['loss_cls'], loss_cls)
    torch.testing.assert_close(losses['loss_bbox'], loss_bbox)

    soft_losses = soft.loss_by_feat(cls_scores, bbox_preds, data)
    assert soft_losses['loss_cls'].item() != pytest.approx(
        losses['loss_cls'].item())
    # The warm-up does not look at the option.
    set_epoch(0)
    torch.testing.assert_close(
        hard.loss_by_feat(cls_scores, bbox_preds, data),
        soft.loss_by_feat(cls_scores, bbox_preds, data))


@pytest.mark.parametrize('size', [(5, 6), (1, 3), (2, 1)])
def test_sampling_matches_deformable_conv(size):
    # Eq. (6) as the 1x1 deformable conv with one group per coordinate and
    # unit weights: values and gradients, offsets reaching past the border.
    from torchvision.ops import deform_conv2d
    gen = torch.Generator().manual_seed(0)
    boxes = torch.randn(2, 4, *size, generator=gen, requires_grad=True)
    offsets = (3 * torch.randn(2, 8, *size, generator=gen)).requires_grad_()
    grad = torch.randn(2, 4, *size, generator=gen)
    got = sample_box_sides(boxes, offsets)
    got_grads = torch.autograd.grad(got, (boxes, offsets), grad)
    want = deform_conv2d(boxes, offsets, torch.ones(4, 1, 1, 1))
    want_grads = torch.autograd.grad(want, (boxes, offsets), grad)
    torch.testing.assert_close(got, want)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize('norm', [True, False])
def test_task_decomposition_exports_the_same_product(monkeypatch, norm):
    """The export's form (features scaled per layer, then the 1×1
    convolution with its constant weight) equals PyTorch's (the weight
    scaled per sample), with and without the group norm."""
    from tood.models.heads.tood_head import TaskDecomposition
    torch.manual_seed(0)
    norm_cfg = dict(type='GN', num_groups=4) if norm else None
    module = TaskDecomposition(16, 3, norm_cfg).eval()
    for p in module.parameters():  # away from the init's near-zero values
        p.data.normal_()
    g = torch.Generator().manual_seed(1)
    inter = torch.randn(2, 48, 5, 7, generator=g)
    avg = inter.mean((2, 3), keepdim=True)
    eager = module(inter, avg)
    monkeypatch.setattr(torch.compiler, 'is_exporting', lambda: True)
    exported = module(inter, avg)
    assert exported.shape == (2, 16, 5, 7)
    w = module.layer_attention(avg)
    assert not torch.allclose(w[0], w[1])  # each sample its own weights
    torch.testing.assert_close(exported, eager, rtol=1e-5, atol=1e-5)
