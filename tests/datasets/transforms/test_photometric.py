"""PhotoMetricDistortion: MMDetection's arithmetic on uint8 images, each
change at even odds, boxes untouched."""
import cv2
import numpy as np
import pytest

import tood.datasets  # noqa: F401  (registers everything)
from tood.datasets.transforms import PhotoMetricDistortion
from tood.datasets.transforms.photometric import Distortion
from tood.registry import TRANSFORMS


def random_image(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)


def reference(img, draw):
    """MMDetection's float32 steps (brightness added, contrast multiplied,
    saturation scaled and hue turned in float HSV), clipped to 0-255 after
    each step as uint8 steps are."""
    x = img.astype(np.float32)
    if draw.brightness is not None:
        x = np.clip(x + draw.brightness, 0, 255)
    if draw.contrast is not None and not draw.contrast_last:
        x = np.clip(x * draw.contrast, 0, 255)
    if draw.saturation is not None or draw.hue is not None:
        # float HSV: hue in degrees [0, 360), saturation in [0, 1].
        hsv = cv2.cvtColor(x, cv2.COLOR_BGR2HSV)
        if draw.saturation is not None:
            hsv[..., 1] = np.clip(hsv[..., 1] * draw.saturation, 0, 1)
        if draw.hue is not None:
            hsv[..., 0] = (hsv[..., 0] + draw.hue) % 360
        x = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if draw.contrast is not None and draw.contrast_last:
        x = np.clip(x * draw.contrast, 0, 255)
    return np.clip(x, 0, 255)


@pytest.mark.parametrize('draw', [
    Distortion(20.0, None, None, None, False),
    Distortion(-30.0, None, None, None, True),
    Distortion(None, 1.3, None, None, False),
    Distortion(None, 0.6, None, None, True),
    Distortion(None, None, 1.4, None, False),
    Distortion(None, None, 0.5, None, False),
    Distortion(None, None, None, 15.0, False),
    Distortion(None, None, None, -18.0, False),
    Distortion(-25.0, 0.7, 0.6, -17.0, True),
    Distortion(30.0, 1.4, 1.5, 18.0, False),
])
def test_matches_mmdetection_arithmetic(draw):
    img = random_image()
    out = PhotoMetricDistortion.distort(img, draw)
    assert out.dtype == np.uint8 and out.shape == img.shape
    diff = np.abs(out.astype(np.float32) - reference(img, draw))
    # uint8 HSV (hue in steps of 2 degrees) against float HSV.
    assert diff.mean() < 1.0 and diff.max() <= 10, (diff.mean(), diff.max())


def test_brightness_and_contrast_are_exact():
    img = random_image()
    out = PhotoMetricDistortion.distort(
        img, Distortion(-20.0, None, None, None, False))
    np.testing.assert_array_equal(out, np.clip(img.astype(int) - 20, 0, 255))
    out = PhotoMetricDistortion.distort(
        img, Distortion(None, 2.0, None, None, True))
    np.testing.assert_array_equal(out, np.clip(img.astype(int) * 2, 0, 255))


def test_grey_stays_grey_under_saturation_and_hue():
    grey = np.full((8, 8, 3), 97, np.uint8)
    out = PhotoMetricDistortion.distort(
        grey, Distortion(None, None, 1.5, 18.0, False))
    np.testing.assert_array_equal(out, grey)


def test_hue_turns_the_right_way():
    # Pure red (hue 0) turned by +18 degrees leans to yellow (hue 60):
    # green rises, blue stays 0.
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 2] = 255
    out = PhotoMetricDistortion.distort(
        red, Distortion(None, None, None, 18.0, False))
    blue, green, r = out[0, 0].astype(int)
    assert r == 255 and blue == 0 and 60 <= green <= 90


def test_each_change_at_even_odds_within_its_range():
    transform = PhotoMetricDistortion(
        brightness_delta=10,
        contrast_range=(0.8, 1.2),
        saturation_range=(0.6, 0.9),
        hue_delta=5)
    np.random.seed(0)
    draws = [transform._draw() for _ in range(4000)]
    ranges = dict(
        brightness=(-10, 10),
        contrast=(0.8, 1.2),
        saturation=(0.6, 0.9),
        hue=(-5, 5))
    for field, (low, high) in ranges.items():
        values = [getattr(d, field) for d in draws]
        applied = [v for v in values if v is not None]
        assert 0.45 < len(applied) / len(values) < 0.55, field
        assert low <= min(applied) and max(applied) <= high, field
    last = np.mean([d.contrast_last for d in draws])
    assert 0.45 < last < 0.55


def test_changes_only_the_image():
    boxes = np.array([[1, 2, 10, 12]], np.float32)
    results = dict(
        img=random_image(),
        gt_bboxes=boxes.copy(),
        gt_bboxes_labels=np.array([3]),
        gt_ignore_flags=np.array([True]),
        img_shape=(40, 50))
    np.random.seed(1)
    out = TRANSFORMS.build(dict(type='PhotoMetricDistortion'))(results)
    np.testing.assert_array_equal(out['gt_bboxes'], boxes)
    assert out['gt_bboxes_labels'].tolist() == [3]
    assert out['gt_ignore_flags'].tolist() == [True]
    assert out['img'].shape == (40, 50, 3) and out['img'].dtype == np.uint8


def test_needs_a_uint8_image():
    with pytest.raises(ValueError, match='to_float32'):
        PhotoMetricDistortion()(dict(img=random_image().astype(np.float32)))


@pytest.mark.parametrize('kwargs', [
    dict(brightness_delta=-1),
    dict(contrast_range=(1.5, 0.5)),
    dict(saturation_range=(-0.1, 1)),
    dict(hue_delta=200),
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        PhotoMetricDistortion(**kwargs)
