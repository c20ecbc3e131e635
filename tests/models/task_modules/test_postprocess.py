"""The one post-processing (``task_modules/postprocess.py``) against the
data-dependent steps it replaces, spelt out with torch ops."""
import pytest
import torch
from torchvision.ops import batched_nms

from tood.errors import ConfigError
from tood.models.task_modules import (class_nms, detections_from_levels,
                                     select_detections)
# Imported under another name: pytest would take a Test* class for tests.
from tood.models.task_modules import TestCfg as Cfg


def random_boxes(g: torch.Generator, n: int, size: float = 100.0,
                 clusters: int = 6) -> torch.Tensor:
    """(n, 4) boxes around a few centres, so that many overlap."""
    centres = torch.rand(clusters, 2, generator=g) * size
    c = centres[torch.randint(0, clusters, (n, ), generator=g)] + \
        torch.randn(n, 2, generator=g) * 4
    wh = torch.rand(n, 2, generator=g) * 25 + 5
    return torch.cat([c - wh / 2, c + wh / 2], 1)


def reference(scores, boxes, per_level, cfg: Cfg, factors=None):
    """One image: per level the pairs above score_thr, the best nms_pre of
    them; class-aware NMS over all levels; the best max_per_img."""
    k = scores.shape[1]
    out_b, out_s, out_l, start = [], [], [], 0
    for s, b in zip(scores.split(per_level), boxes.split(per_level)):
        flat = s.reshape(-1)
        keep = (flat > cfg.score_thr).nonzero().squeeze(1)
        if keep.numel() > cfg.nms_pre:
            keep = keep[flat[keep].topk(cfg.nms_pre).indices]
        score = flat[keep]
        if factors is not None:
            score = (score * factors[start + keep // k]).sqrt()
        out_s.append(score)
        out_b.append(b[keep // k])
        out_l.append(keep % k)
        start += len(s)
    b, s, lab = torch.cat(out_b), torch.cat(out_s), torch.cat(out_l)
    keep = batched_nms(b, s, lab, cfg.iou_threshold)[:cfg.max_per_img]
    return b[keep], s[keep], lab[keep]


def inputs(seed: int, per_level=(400, 100, 25), num_classes: int = 5):
    g = torch.Generator().manual_seed(seed)
    n = sum(per_level)
    scores = torch.rand(2, n, num_classes, generator=g)**3
    boxes = torch.stack([random_boxes(g, n), random_boxes(g, n)])
    return scores, boxes, list(per_level)


@pytest.mark.parametrize('with_factors', [False, True])
def test_select_detections_matches_the_data_dependent_steps(with_factors):
    scores, boxes, per_level = inputs(1)
    factors = torch.rand(scores.shape[:2]) if with_factors else None
    cfg = Cfg(score_thr=0.2, nms_pre=150, iou_threshold=0.5,
                  max_per_img=40)
    found = select_detections(scores, boxes, per_level, cfg, factors)
    assert found.boxes.shape == (2, 40, 4)
    for b, image in enumerate(found.instances()):
        ref = reference(scores[b], boxes[b], per_level, cfg,
                        None if factors is None else factors[b])
        assert len(image) == len(ref[1]) > 0
        # Same detections, best first; equal scores may swap places.
        order = torch.argsort(ref[1], descending=True, stable=True)
        torch.testing.assert_close(image.scores, ref[1][order], rtol=0,
                                   atol=0)
        mine = {(tuple(bx.tolist()), int(lab))
                for bx, lab in zip(image.bboxes, image.labels)}
        theirs = {(tuple(bx.tolist()), int(lab))
                  for bx, lab in zip(*ref[::2])}
        assert mine == theirs


def test_padding_past_num():
    scores, boxes, per_level = inputs(2)
    cfg = Cfg(score_thr=0.9, max_per_img=300)
    found = select_detections(scores, boxes, per_level, cfg)
    n = int(found.num[0])
    assert 0 < n < 300
    assert (found.labels[0, n:] == -1).all()
    assert (found.scores[0, n:] == 0).all() and (found.boxes[0, n:] == 0).all()


def test_nothing_above_the_threshold():
    found = select_detections(torch.full((1, 10, 3), 0.01),
                              torch.zeros(1, 10, 4), [8, 2], Cfg())
    image = found.instances()[0]
    assert image.bboxes.shape == (0, 4) and len(image.scores) == 0


def test_the_threshold_looks_at_the_probability_alone():
    """With score factors (ATSS) a pair above score_thr stays, however small
    its factor makes its final score."""
    scores = torch.zeros(1, 4, 2)
    scores[0, 0, 1] = 0.5
    boxes = torch.tensor([[[0., 0, 10, 10]] * 4])
    found = select_detections(scores, boxes, [4], Cfg(),
                              factors=torch.full((1, 4), 1e-4))
    assert found.num.tolist() == [1]
    assert found.scores[0, 0].item() == pytest.approx((0.5 * 1e-4)**0.5)


def test_min_bbox_size_drops_small_boxes():
    scores = torch.full((1, 3, 1), 0.9)
    boxes = torch.tensor([[[0., 0, 10, 10], [20, 20, 20, 30],
                           [40, 40, 43, 50]]])
    kept = select_detections(scores, boxes, [3], Cfg())
    assert kept.num.tolist() == [3]  # zero-size boxes kept by default
    dropped = select_detections(scores, boxes, [3],
                                Cfg(min_bbox_size=3))
    assert dropped.boxes[0, :int(dropped.num[0])].tolist() == [[0, 0, 10, 10]]


def test_class_nms_is_batched_nms_per_image():
    scores, boxes, _ = inputs(3)
    labels = torch.randint(0, 5, scores.shape[:2])
    score = torch.where(scores[..., 0] > 0.1, scores[..., 0], 0.0)
    keep = class_nms(boxes, score, labels, 5, 0.5, 100)
    for b in range(2):
        idx = (score[b] > 0).nonzero().squeeze(1)
        ref = idx[batched_nms(boxes[b, idx], score[b, idx], labels[b, idx],
                              0.5)]
        assert set(keep[b].nonzero().squeeze(1).tolist()) == set(
            ref.tolist())


def test_detections_from_levels_rescales_and_clips():
    # One level of 2x2 cells at stride 4; one confident box at (1, 1).
    cls = torch.zeros(1, 1, 2, 2)
    cls[0, 0, 1, 1] = 0.8
    box = torch.zeros(1, 4, 2, 2)
    box[0, :, 1, 1] = torch.tensor([-1., 1, 3, 2])  # stride units
    meta = dict(scale_factor=(2.0, 0.5), ori_shape=(14, 5), img_shape=(8, 8))
    image = detections_from_levels([cls], [box], [4], [meta], Cfg())[0]
    # (-4, 4, 12, 8) px / (2, 0.5, 2, 0.5), clipped to 5 wide, 14 high.
    assert image.bboxes.tolist() == [[0, 8, 5, 14]]
    raw = detections_from_levels([cls], [box], [4], [meta], Cfg(),
                                 rescale=False)[0]
    assert raw.bboxes.tolist() == [[0, 4, 8, 8]]


def test_test_cfg_reads_mmdetection_layout():
    assert Cfg.from_config(None) == Cfg() == Cfg(0.05, 1000, 0.6,
                                                             100, -1)
    cfg = dict(nms_pre=500, score_thr=0.1, min_bbox_size=0,
               nms=dict(type='nms', iou_threshold=0.7), max_per_img=50)
    test_cfg = Cfg.from_config(cfg)
    assert test_cfg == Cfg(0.1, 500, 0.7, 50, 0)
    assert Cfg.from_config(test_cfg.to_config()) == test_cfg


@pytest.mark.parametrize('cfg, key', [
    (dict(score_th=0.1), 'score_th'),
    (dict(nms=dict(type='soft_nms')), 'model.test_cfg.nms.type'),
    (dict(nms=dict(iou_thr=0.5)), 'nms.iou_thr'),
    (dict(max_per_img=0), 'model.test_cfg.max_per_img'),
])
def test_test_cfg_names_a_bad_key(cfg, key):
    with pytest.raises(ConfigError, match=key):
        Cfg.from_config(cfg)
