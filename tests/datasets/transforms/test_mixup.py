"""CachedMixUp: the other image's boxes follow its pixels into the blend;
the current image's boxes, labels and ignore flags are kept."""
import mmcv
import numpy as np
import pytest
from painted_boxes import check_aligned, check_boxes, painted

import tood.datasets  # noqa: F401  (registers everything)
from tood.datasets.transforms import CachedMixUp
from tood.datasets.transforms.instances import get_instances
from tood.registry import TRANSFORMS


def sources():
    return [
        painted(40, 60, [[2, 3, 20, 30], [30, 10, 58, 38]], [0, 1]),
        painted(50, 50, [[5, 5, 45, 20], [10, 25, 30, 48]], [2, 3]),
        painted(30, 80, [[40, 2, 78, 28]], [4]),
        painted(60, 40, [[0, 0, 20, 20], [22, 30, 38, 58]], [5, 6]),
        painted(48, 64, []),
    ]


def black(boxes=(), labels=()):
    """A black image whose boxes (not painted) must pass unchanged."""
    data = painted(48, 64, boxes, labels)
    data['img'][:] = 0
    return data


def split(out, num_current):
    """The current image's rows and the other image's."""
    first = {k: out[k][:num_current] for k in ('gt_bboxes',
                                              'gt_bboxes_labels',
                                              'gt_ignore_flags')}
    rest = {k: out[k][num_current:] for k in first}
    return first, dict(rest, img=out['img'], img_shape=out['img_shape'])


def test_builds_with_mmdetection_arguments():
    mixup = TRANSFORMS.build(
        dict(
            type='CachedMixUp',
            img_scale=(640, 640),
            ratio_range=(1.0, 1.0),
            flip_ratio=0.5,
            pad_val=114.0,
            max_iters=15,
            bbox_clip_border=True,
            max_cached_images=20,
            random_pop=False,
            prob=0.5))
    assert isinstance(mixup, CachedMixUp)
    assert 'max_cached_images=20' in repr(mixup)


@pytest.mark.parametrize('seed', range(10))
def test_boxes_follow_their_pixels(seed):
    np.random.seed(seed)
    mixup = CachedMixUp(img_scale=(48, 64), ratio_range=(0.5, 1.6),
                        max_cached_images=6)
    for data in sources():
        mixup(data)
    current = black([[1, 1, 9, 9]], [6])
    out = mixup(current)
    assert out['img'].shape == (48, 64, 3) and out['img_shape'] == (48, 64)
    check_aligned(out)
    first, added = split(out, 1)
    np.testing.assert_array_equal(first['gt_bboxes'], [[1, 1, 9, 9]])
    assert first['gt_bboxes_labels'].tolist() == [6]
    assert first['gt_ignore_flags'].tolist() == [False]
    # Blended half and half with black: the colours at half brightness.
    check_boxes(added, brightness=0.5)


def test_known_draw_flipped():
    mixup = CachedMixUp(img_scale=(48, 64))
    other = sources()[0]  # 60x40, fitted to 64x42
    entry = dict(get_instances(other), img=other['img'])
    mixup._draw = lambda: (entry, 1.0, True, 0.0, 0.0)
    mixup.cache.push(other)
    out = mixup(black())
    fitted = mmcv.imresize(other['img'], (64, 42))
    layer = np.full((48, 64, 3), 114, np.uint8)
    layer[:42] = fitted[:, ::-1]
    np.testing.assert_allclose(out['img'], layer / 2, atol=1)
    scale = np.array([64 / 60, 42 / 40, 64 / 60, 42 / 40])
    boxes = other['gt_bboxes'] * scale
    flipped = np.stack(
        [64 - boxes[:, 2], boxes[:, 1], 64 - boxes[:, 0], boxes[:, 3]], 1)
    np.testing.assert_allclose(out['gt_bboxes'], flipped, rtol=1e-5)
    assert out['gt_bboxes_labels'].tolist() == [0, 1]
    check_boxes(out, brightness=0.5)


def test_window_cuts_and_drops_boxes():
    # Scaled by 2 the other image is 128x84 in a 128x96 canvas; the window
    # (48x64) at its bottom right corner holds no box of it.
    mixup = CachedMixUp(img_scale=(48, 64))
    other = sources()[0]
    entry = dict(get_instances(other), img=other['img'])
    mixup._draw = lambda: (entry, 2.0, False, 0.999, 0.999)
    mixup.cache.push(other)
    out = mixup(black())
    check_aligned(out)
    assert len(out['gt_bboxes']) == 1  # [30, 10, 58, 38] reaches it
    check_boxes(out, brightness=0.5)
    # Rows 36-47 of the window are below the image (84 - 48 = 36): pad.
    np.testing.assert_allclose(out['img'][40:], 57, atol=1)


def test_passes_unchanged_without_another_image_with_boxes():
    mixup = CachedMixUp(img_scale=(48, 64))
    first = sources()[0]
    assert mixup(first)['img'] is first['img']  # alone in the cache
    empty = CachedMixUp(img_scale=(48, 64))
    for _ in range(3):
        data = painted(48, 64, [])
        out = empty(data)
        assert out['img'] is data['img']
        check_aligned(out)
    never = CachedMixUp(img_scale=(48, 64), prob=0.0)
    for data in sources():
        assert never(data)['img'] is data['img']


def test_image_without_annotations_is_blended_without_boxes():
    np.random.seed(0)
    mixup = CachedMixUp(img_scale=(48, 64))
    for data in sources():
        mixup(data)
    bare = mixup(dict(img=np.zeros((48, 64, 3), np.uint8)))
    assert 'gt_bboxes' not in bare
    assert bare['img'].any()


def test_cache_size():
    mixup = CachedMixUp(img_scale=(48, 64), max_cached_images=3)
    for data in sources():
        mixup(data)
    assert len(mixup.cache) == 3


@pytest.mark.parametrize('kwargs', [
    dict(img_scale=(10, )),
    dict(ratio_range=(0, 1)),
    dict(flip_ratio=2),
    dict(prob=-0.1),
    dict(max_iters=0),
    dict(max_cached_images=1),
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        CachedMixUp(**kwargs)


def test_pad_val_per_channel():
    mixup = CachedMixUp(img_scale=(48, 64), pad_val=(2, 4, 6))
    other = sources()[0]
    entry = dict(get_instances(other), img=other['img'])
    mixup._draw = lambda: (entry, 1.0, False, 0.0, 0.0)
    mixup.cache.push(other)
    out = mixup(black())
    # Below the fitted image (rows 42-47): the pad, halved by the blend.
    np.testing.assert_array_equal(out['img'][45, 10], [1, 2, 3])
