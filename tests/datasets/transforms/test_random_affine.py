"""RandomAffine: the boxes follow their pixels, stay in the image, keep
their labels and ignore flags; MMDetection's arguments."""
import cv2
import numpy as np
import pytest
from painted_boxes import check_aligned, check_boxes, label_pixels, painted

import tood.datasets  # noqa: F401  (registers everything)
from tood.datasets.transforms import RandomAffine
from tood.registry import TRANSFORMS

BOXES = [[4, 6, 20, 30], [30, 2, 58, 14], [26, 24, 40, 44], [44, 30, 62, 46],
         [2, 38, 12, 47]]


def results():
    return painted(48, 64, BOXES, labels=[0, 1, 2, 3, 4])


def test_builds_with_mmdetection_arguments():
    affine = TRANSFORMS.build(
        dict(
            type='RandomAffine',
            max_rotate_degree=0,
            max_translate_ratio=0.2,
            scaling_ratio_range=(0.1, 2),
            max_shear_degree=0,
            border=(-320, -320),
            border_val=(114, 114, 114),
            bbox_clip_border=True,
            min_bbox_size=2))
    assert isinstance(affine, RandomAffine)
    assert 'scaling_ratio_range=(0.1, 2)' in repr(affine)


@pytest.mark.parametrize('seed', range(12))
def test_boxes_follow_their_pixels(seed):
    np.random.seed(seed)
    affine = RandomAffine(
        max_rotate_degree=30,
        max_translate_ratio=0.3,
        scaling_ratio_range=(0.5, 1.6),
        max_shear_degree=10,
        border=(4, -8))
    out = affine(results())
    assert out['img'].shape == (56, 48, 3)
    check_boxes(out, filled=False)


@pytest.mark.parametrize('seed', range(6))
def test_scale_and_shift_give_tight_boxes(seed):
    # Without rotation and shear a box is exactly its object's image: the
    # centres of the pixels of its colour reach to within 2 pixels of each
    # side (half a pixel, and half the scale for interpolation).
    np.random.seed(seed)
    affine = RandomAffine(
        max_rotate_degree=0,
        max_shear_degree=0,
        max_translate_ratio=0.05,
        scaling_ratio_range=(0.7, 1.4))
    out = affine(results())
    check_boxes(out)
    for box, label in zip(out['gt_bboxes'], out['gt_bboxes_labels']):
        points = label_pixels(out['img'], label)
        seen = np.concatenate([points.min(0), points.max(0)])
        np.testing.assert_allclose(seen, box, atol=2.0)


def test_pixel_grid_matches_resize():
    # Boxes are scaled by the factor, as mmcv's Resize does; the image must
    # follow the same pixel-centre convention as cv2.resize, else it would
    # be half a pixel off its boxes.
    affine = RandomAffine()
    affine._matrix = lambda in_size, out_size: np.array(
        [[2, 0, 0], [0, 2, 0], [0, 0, 1]], np.float64)
    data = results()
    out = affine(dict(data))
    resized = cv2.resize(data['img'], (128, 96),
                         interpolation=cv2.INTER_LINEAR)[:48, :64]
    diff = np.abs(out['img'].astype(int) - resized.astype(int))
    # (Row and column 0 differ: resize repeats the edge where the warp
    # mixes in border_val.)
    assert diff[1:, 1:].max() <= 1


def test_identity_changes_nothing():
    affine = RandomAffine(
        max_rotate_degree=0,
        max_translate_ratio=0,
        scaling_ratio_range=(1, 1),
        max_shear_degree=0)
    data = results()
    out = affine(dict(data))
    np.testing.assert_array_equal(out['img'], data['img'])
    np.testing.assert_allclose(out['gt_bboxes'], data['gt_bboxes'],
                               atol=1e-4)


def zoom(affine):
    """Scale 2 about the point (60, 40): x' = 2x - 60, y' = 2y - 40."""
    affine._matrix = lambda in_size, out_size: np.array(
        [[2, 0, -60], [0, 2, -40], [0, 0, 1]], np.float64)
    return affine


def test_known_matrix_moves_boxes():
    # Boxes 0, 1 and 4 end outside; box 2 [26, 24, 40, 44] becomes
    # [-8, 8, 20, 48], clipped to [0, 8, 20, 48]; box 3 [44, 30, 62, 46]
    # becomes [28, 20, 64, 52], clipped to [28, 20, 64, 48].
    out = zoom(RandomAffine())(results())
    assert out['gt_bboxes_labels'].tolist() == [2, 3]
    assert out['gt_ignore_flags'].tolist() == [False, True]
    np.testing.assert_allclose(out['gt_bboxes'],
                               [[0, 8, 20, 48], [28, 20, 64, 48]])
    check_boxes(out)


def test_clip_border_false_keeps_whole_boxes_but_drops_gone_ones():
    out = zoom(RandomAffine(bbox_clip_border=False))(results())
    check_aligned(out)
    assert out['gt_bboxes_labels'].tolist() == [2, 3]
    np.testing.assert_allclose(out['gt_bboxes'],
                               [[-8, 8, 20, 48], [28, 20, 64, 52]])


def test_min_bbox_size_drops_what_is_left_too_small():
    # Shifted 60 pixels left: of box 3 ([44, 30, 62, 46]) 2 pixels are left
    # inside, of box 1 ([30, 2, 58, 14]) none.
    def shifted(min_bbox_size):
        affine = RandomAffine(min_bbox_size=min_bbox_size)
        affine._matrix = lambda in_size, out_size: np.array(
            [[1, 0, -60], [0, 1, 0], [0, 0, 1]], np.float64)
        return affine(results())

    assert shifted(0)['gt_bboxes_labels'].tolist() == [3]
    out = shifted(2)
    assert out['gt_bboxes'].shape == (0, 4)
    check_aligned(out)


def test_image_without_boxes_and_without_annotations():
    np.random.seed(0)
    empty = painted(48, 64, [])
    out = RandomAffine(border=(2, 2))(empty)
    assert out['img'].shape == (52, 68, 3)
    assert out['img_shape'] == (52, 68)
    check_aligned(out)
    assert len(out['gt_bboxes']) == 0
    bare = RandomAffine()(dict(img=np.zeros((10, 12, 3), np.uint8)))
    assert 'gt_bboxes' not in bare and bare['img'].shape == (10, 12, 3)


def test_fills_uncovered_pixels_with_border_val():
    affine = RandomAffine(max_rotate_degree=0, max_translate_ratio=0,
                          scaling_ratio_range=(0.5, 0.5), max_shear_degree=0,
                          border_val=(1, 2, 3))
    out = affine(results())
    np.testing.assert_array_equal(out['img'][0, 0], [1, 2, 3])


@pytest.mark.parametrize('kwargs', [
    dict(max_translate_ratio=1.5),
    dict(scaling_ratio_range=(0, 1)),
    dict(scaling_ratio_range=(2, 1)),
    dict(border=(1, 2, 3)),
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        RandomAffine(**kwargs)


def test_border_that_leaves_nothing():
    with pytest.raises(ValueError, match='border'):
        RandomAffine(border=(-24, 0))(results())
