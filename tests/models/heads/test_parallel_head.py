import pytest
import torch
from test_tood_head import (STRIDES, TEST_CFG, TRAIN_CFG, feats,
                            record_assigners, samples)

from tood.registry import MODELS


def make_head(**kwargs):
    cfg = dict(
        type='ParallelHead',
        num_classes=3,
        in_channels=16,
        feat_channels=32,
        stacked_convs=2,
        strides=STRIDES,
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
        train_cfg=TRAIN_CFG,
        test_cfg=TEST_CFG)
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def t_head():
    return MODELS.build(
        dict(
            type='TOODHead',
            num_classes=3,
            in_channels=16,
            feat_channels=32,
            stacked_convs=2,
            strides=STRIDES,
            norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
            train_cfg=TRAIN_CFG,
            test_cfg=TEST_CFG))


def test_same_detections_as_t_head_on_same_outputs():
    parallel = make_head()
    with torch.no_grad():
        parallel.atss_cls.bias.fill_(3.0)
    cls_scores, bbox_preds = parallel(feats())
    metas = [s.metainfo for s in samples((0, 0))]
    a = parallel.predict_by_feat(cls_scores, bbox_preds, metas)
    b = t_head().predict_by_feat(cls_scores, bbox_preds, metas)
    for x, y in zip(a, b):
        assert len(x) > 0
        for key in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(x.get(key), y.get(key))


def test_towers_without_centerness():
    head = make_head()
    names = {n for n, _ in head.named_parameters()}
    assert {'cls_convs.1.conv.weight', 'reg_convs.0.gn.weight',
            'atss_cls.weight', 'atss_reg.weight', 'scales.2.scale'} <= names
    assert not any('centerness' in n for n in names)
    assert not any('decomp' in n or 'inter_convs' in n for n in names)


@pytest.mark.parametrize('anchor_type', ['anchor_free', 'anchor_based'])
def test_outputs_like_the_t_head(anchor_type):
    head = make_head(anchor_type=anchor_type)
    cls_scores, bbox_preds = head(feats())
    for s, c, b in zip(STRIDES, cls_scores, bbox_preds):
        assert c.shape == (2, 3, 64 // s, 64 // s)
        assert b.shape == (2, 4, 64 // s, 64 // s)
        assert ((c > 0) & (c < 1)).all()
        assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
    # focal-loss prior probability at initialisation
    assert cls_scores[0].mean().item() == pytest.approx(0.01, rel=0.1)


def test_zero_regression_decodes_like_the_t_head():
    head = make_head()
    with torch.no_grad():
        head.atss_reg.weight.zero_()
        head.atss_reg.bias.zero_()
    _, bbox_preds = head(feats())
    # exp(0) = 1 stride on every side of the point (j, i)
    box = bbox_preds[0][0, :, 2, 3]
    assert box.tolist() == [3 - 1, 2 - 1, 3 + 1, 2 + 1]


@pytest.mark.parametrize('epoch', [0, 4])
def test_warmup_then_tal_losses_and_gradients(epoch, set_epoch):
    head = make_head()
    ran = record_assigners(head.criterion)
    set_epoch(epoch)
    losses = head.loss(feats(), samples((3, 1)))
    # initial_epoch=4: ATSS in epoch 0, TAL in epoch 4.
    assert ran == ['ATSS' if epoch < 4 else 'TAL']
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    assert losses['loss_cls'].item() > 0 and losses['loss_bbox'].item() > 0
    sum(losses.values()).backward()
    for n, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n


def test_same_loss_as_t_head_on_same_outputs(set_epoch):
    """Given the same outputs, the two heads' losses are identical."""
    parallel, tood = make_head(), t_head()
    cls_scores, bbox_preds = parallel(feats())
    for epoch in (0, 4):
        set_epoch(epoch)
        a = parallel.loss_by_feat(cls_scores, bbox_preds, samples((3, 1)))
        b = tood.loss_by_feat(cls_scores, bbox_preds, samples((3, 1)))
        for key in a:
            torch.testing.assert_close(a[key], b[key])


def test_no_gts_and_predict(set_epoch):
    head = make_head()
    set_epoch(4)
    empty = head.loss(feats(), samples((0, 0)))
    assert empty['loss_bbox'].item() == 0
    sum(empty.values()).backward()
    assert all(p.grad is not None for p in head.parameters())
    with torch.no_grad():
        head.atss_cls.bias.fill_(3.0)
    results = head.predict(feats(), samples((0, 0)))
    for r in results:
        assert 0 < len(r) <= 100
        assert (r.scores > 0.05).all()
        assert r.bboxes.min() >= 0 and r.bboxes.max() <= 64
