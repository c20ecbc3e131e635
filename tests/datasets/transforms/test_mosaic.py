"""CachedMosaic: four images on a (2h, 2w) canvas, each box with its
pixels, cut to its image's visible part, label and ignore flag aligned."""
import mmcv
import numpy as np
import pytest
from painted_boxes import check_aligned, check_boxes, painted

import tood.datasets  # noqa: F401  (registers everything)
from tood.datasets.transforms import CachedMosaic
from tood.datasets.transforms.instances import get_instances
from tood.registry import TRANSFORMS


def sources():
    """Images of other sizes than the tiles' (48, 64), one without boxes."""
    return [
        painted(40, 60, [[2, 3, 20, 30], [30, 10, 58, 38]], [0, 1]),
        painted(50, 50, [[5, 5, 45, 20], [10, 25, 30, 48]], [2, 3]),
        painted(30, 80, [[40, 2, 78, 28]], [4]),
        painted(60, 40, [[0, 0, 20, 20], [22, 30, 38, 58]], [5, 6]),
        painted(48, 64, []),
    ]


def test_builds_with_mmdetection_arguments():
    mosaic = TRANSFORMS.build(
        dict(
            type='CachedMosaic',
            img_scale=(640, 640),
            center_ratio_range=(0.5, 1.5),
            bbox_clip_border=True,
            pad_val=114.0,
            prob=1.0,
            max_cached_images=40,
            random_pop=True))
    assert isinstance(mosaic, CachedMosaic)
    assert 'max_cached_images=40' in repr(mosaic)


@pytest.mark.parametrize('seed', range(8))
def test_boxes_follow_their_pixels(seed):
    np.random.seed(seed)
    mosaic = CachedMosaic(img_scale=(48, 64), max_cached_images=5)
    for data in sources() * 2:
        out = mosaic(data)
        assert out['img'].shape == (96, 128, 3)
        check_boxes(out)


def test_layout_and_boxes_of_a_known_draw():
    mosaic = CachedMosaic(img_scale=(48, 64))
    first, second, third, fourth, _ = sources()
    others = [dict(get_instances(r), img=r['img'])
              for r in (second, third, fourth)]
    centre_x, centre_y = 70, 40
    mosaic._draw = lambda: (True, others, (centre_x, centre_y))
    out = mosaic(dict(first))
    canvas = out['img']
    # The first image, fitted into (48, 64): 60x40 -> 64x42, ends at the
    # centre from the top left (its top 2 rows cut).
    fitted = mmcv.imresize(first['img'], (64, 42))
    np.testing.assert_array_equal(
        canvas[0:centre_y, centre_x - 64:centre_x], fitted[42 - centre_y:])
    # The second (50x50 -> 48x48) starts at the centre's x, ends at its y.
    fitted = mmcv.imresize(second['img'], (48, 48))
    np.testing.assert_array_equal(
        canvas[0:centre_y, centre_x:centre_x + 48], fitted[48 - centre_y:])
    # Where no image lies: pad_val.
    assert (canvas[0, 0] == 114).all() and (canvas[95, 127] == 114).all()
    # Boxes of the first image: scaled by (64/60, 42/40), shifted by
    # (70 - 64, 40 - 42) and clipped to the canvas at y = 0.
    first_boxes = out['gt_bboxes'][out['gt_bboxes_labels'] <= 1]
    expected = (first['gt_bboxes'] * [64 / 60, 42 / 40, 64 / 60, 42 / 40] +
                [6, -2, 6, -2])
    expected[:, 1] = expected[:, 1].clip(0)
    np.testing.assert_allclose(first_boxes, expected, rtol=1e-5)
    assert out['gt_bboxes_labels'].tolist() == [0, 1, 2, 3, 4, 5, 6]
    check_boxes(out)


def test_boxes_cut_off_the_canvas_are_dropped_or_clipped():
    # Centre at the left edge: the left images are off the canvas.
    mosaic = CachedMosaic(img_scale=(48, 64), center_ratio_range=(0, 0))
    data = sources()
    others = [dict(get_instances(r), img=r['img']) for r in data[1:4]]
    mosaic._draw = lambda: (True, others, (0, 30))
    out = mosaic(data[0])
    # Images 1 and 3 (labels 0, 1 and 4) are left of the centre.
    assert set(out['gt_bboxes_labels'].tolist()) == {2, 3, 5, 6}
    check_boxes(out)
    kept = CachedMosaic(img_scale=(48, 64), bbox_clip_border=False)
    kept._draw = mosaic._draw
    whole = kept(sources()[0])
    check_aligned(whole)
    # Unclipped, the second image's box [5, 5, 45, 20] (scale 48/50) keeps
    # its part above the canvas: the tile ends at y = 30.
    box = whole['gt_bboxes'][whole['gt_bboxes_labels'] == 2][0]
    np.testing.assert_allclose(box, [4.8, 4.8 - 18, 43.2, 19.2 - 18],
                               rtol=1e-5)


def test_prob_and_cache():
    mosaic = CachedMosaic(img_scale=(48, 64), prob=0.0, max_cached_images=4,
                          random_pop=False)
    data = sources()
    for item in data:
        out = mosaic(dict(item))
        assert out['img'] is item['img']
    # The newest four, oldest first.
    assert len(mosaic.cache) == 4
    assert [e['img'].shape for e in mosaic.cache.entries] == [
        r['img'].shape for r in data[1:]
    ]
    # Copies: changing the results afterwards leaves the cache as it was.
    data[4]['img'][:] = 0
    assert (mosaic.cache.entries[-1]['img'] != 0).any()


def test_images_without_boxes_or_annotations():
    np.random.seed(0)
    mosaic = CachedMosaic(img_scale=(24, 32))
    for _ in range(5):
        out = mosaic(painted(30, 40, []))
        assert out['img'].shape == (48, 64, 3)
        check_aligned(out)
        assert out['gt_bboxes'].shape == (0, 4)
    bare = CachedMosaic(img_scale=(24, 32))(
        dict(img=np.zeros((30, 40, 3), np.uint8)))
    assert bare['img'].shape == (48, 64, 3) and 'gt_bboxes' not in bare


@pytest.mark.parametrize('kwargs', [
    dict(img_scale=(0, 10)),
    dict(center_ratio_range=(1.5, 0.5)),
    dict(center_ratio_range=(0.5, 2.5)),
    dict(prob=1.5),
    dict(max_cached_images=3),
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        CachedMosaic(**kwargs)


def test_pad_val_per_channel():
    # RTMDet's configs give pad_val=(114, 114, 114).
    mosaic = CachedMosaic(img_scale=(48, 64), pad_val=(1, 2, 3))
    data = sources()
    others = [dict(get_instances(r), img=r['img']) for r in data[1:4]]
    mosaic._draw = lambda: (True, others, (70, 40))
    out = mosaic(data[0])
    np.testing.assert_array_equal(out['img'][95, 127], [1, 2, 3])
