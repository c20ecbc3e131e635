"""The NumPy post-processor of models exported without NMS."""
import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms, nms

from tood.deployment import nms_numpy, postprocess_numpy


def random_boxes(rng: np.random.Generator, n: int, size: float = 100.0,
                 clusters: int = 6) -> np.ndarray:
    """(n, 4) float32 boxes around a few centres, so that many overlap."""
    centres = rng.uniform(0, size, (clusters, 2))
    c = centres[rng.integers(0, clusters, n)] + rng.normal(0, 4, (n, 2))
    wh = rng.uniform(5, 30, (n, 2))
    return np.concatenate([c - wh / 2, c + wh / 2], 1).astype(np.float32)


@pytest.mark.parametrize('iou', [0.3, 0.6])
def test_nms_numpy_matches_torchvision(iou):
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 300)
    # One empty box and a duplicate: neither NaN nor ties may break it.
    boxes[5] = [10, 10, 10, 10]
    boxes[7] = boxes[8]
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    ref = nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou)
    np.testing.assert_array_equal(nms_numpy(boxes, scores, iou), ref.numpy())


def reference(scores, boxes, per_level, cfg):
    """The post-processing spelt out with torch ops, level by level."""
    scores, boxes = torch.from_numpy(scores), torch.from_numpy(boxes)
    k = scores.shape[1]
    out_b, out_s, out_l = [], [], []
    for s, b in zip(scores.split(per_level), boxes.split(per_level)):
        flat = s.reshape(-1)
        keep = (flat > cfg['score_thr']).nonzero().squeeze(1)
        if keep.numel() > cfg['nms_pre']:
            keep = keep[flat[keep].topk(cfg['nms_pre']).indices]
        out_s.append(flat[keep])
        out_b.append(b[keep // k])
        out_l.append(keep % k)
    b, s, lab = torch.cat(out_b), torch.cat(out_s), torch.cat(out_l)
    keep = batched_nms(b, s, lab, cfg['nms']['iou_threshold'])
    keep = keep[:cfg['max_per_img']]
    return b[keep].numpy(), s[keep].numpy(), lab[keep].numpy()


def test_postprocess_numpy_matches_the_torch_steps():
    rng = np.random.default_rng(1)
    per_level = [400, 100, 25]
    n, k = sum(per_level), 5
    scores = rng.uniform(0, 1, (n, k)).astype(np.float32) ** 3
    boxes = random_boxes(rng, n)
    cfg = dict(
        score_thr=0.2, nms_pre=150, nms=dict(iou_threshold=0.5),
        max_per_img=40)
    boxes_np, scores_np, labels_np = postprocess_numpy(
        scores, boxes, per_level, cfg)
    ref_boxes, ref_scores, ref_labels = reference(scores, boxes, per_level,
                                                  cfg)
    assert len(scores_np) == 40
    np.testing.assert_array_equal(scores_np, ref_scores)
    np.testing.assert_array_equal(labels_np, ref_labels)
    np.testing.assert_array_equal(boxes_np, ref_boxes)


def test_postprocess_numpy_with_nothing_above_threshold():
    boxes, scores, labels = postprocess_numpy(
        np.full((10, 3), 0.01, np.float32), np.zeros((10, 4), np.float32),
        [8, 2], dict(score_thr=0.05))
    assert boxes.shape == (0, 4) and scores.shape == (0, )
    assert labels.shape == (0, )


def test_postprocess_numpy_checks_the_level_sizes():
    with pytest.raises(ValueError, match='sums to 9.*10 priors'):
        postprocess_numpy(
            np.zeros((10, 3), np.float32), np.zeros((10, 4), np.float32),
            [8, 1], {})
