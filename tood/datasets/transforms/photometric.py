"""PhotoMetricDistortion: random brightness, contrast, saturation and hue,
with MMDetection's arguments and their meaning.

The pixel work is OpenCV's: each change is a 256-entry lookup table
(``cv2.LUT``) on the uint8 image, saturation and hue on its HSV form
(``cv2.cvtColor``). On a 640x480 image that takes about a quarter of the
time of MMDetection's float32 arithmetic and a tenth of mmcv's
``adjust_brightness``/``adjust_contrast``/``adjust_color``/``adjust_hue``
in a row, which also define brightness and contrast otherwise (as factors
of a blend); docs/training.md has the timings.
"""
from typing import NamedTuple, Optional, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from tood.registry import TRANSFORMS

# The values a uint8 channel takes, for building lookup tables.
_VALUES = np.arange(256, dtype=np.float32)


def _table(values: np.ndarray) -> np.ndarray:
    """A cv2.LUT table from the float results of ``_VALUES``."""
    return np.rint(values).clip(0, 255).astype(np.uint8)


class Distortion(NamedTuple):
    """One draw of PhotoMetricDistortion; None: that change is skipped."""
    brightness: Optional[float]  # added to every channel
    contrast: Optional[float]  # every channel multiplied by it
    saturation: Optional[float]  # HSV saturation multiplied by it
    hue: Optional[float]  # degrees added to the HSV hue
    contrast_last: bool  # contrast after saturation and hue, else before


@TRANSFORMS.register_module()
class PhotoMetricDistortion(BaseTransform):
    """Change brightness, contrast, saturation and hue, each at random.

    As MMDetection's transform of this name: each of the four changes is
    applied with probability 0.5, in this order: brightness, then contrast
    either before or after saturation and hue (at even odds). Brightness
    adds ``delta`` to every channel, contrast multiplies every channel by
    ``alpha`` (MMDetection's definition, not a blend with the mean grey),
    saturation multiplies the HSV saturation, hue turns the HSV hue by some
    degrees. Unlike MMDetection's, the image stays uint8 (each step rounds
    and clips to 0-255, where MMDetection returns unclipped float32), and
    its random channel swap is left out. Boxes are not changed.

    Required keys: img, (H, W, 3) uint8 BGR. Modified keys: img.

    Args:
        brightness_delta: ``delta`` is drawn from [-brightness_delta,
            brightness_delta], in pixel values.
        contrast_range: (low, high) of ``alpha``.
        saturation_range: (low, high) of the saturation factor.
        hue_delta: the hue turns by up to this many degrees (of 360) either
            way.
    """

    def __init__(self,
                 brightness_delta: float = 32,
                 contrast_range: Tuple[float, float] = (0.5, 1.5),
                 saturation_range: Tuple[float, float] = (0.5, 1.5),
                 hue_delta: float = 18) -> None:
        if not 0 <= brightness_delta <= 255:
            raise ValueError('brightness_delta must be in [0, 255], got '
                             f'{brightness_delta}')
        for name, (low, high) in (('contrast_range', contrast_range),
                                  ('saturation_range', saturation_range)):
            if not 0 <= low <= high:
                raise ValueError(
                    f'{name} must be (low, high) with 0 <= low <= high, '
                    f'got {(low, high)}')
        if not 0 <= hue_delta <= 180:
            raise ValueError(f'hue_delta must be in [0, 180] degrees, got '
                             f'{hue_delta}')
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta

    @cache_randomness
    def _draw(self) -> Distortion:

        def maybe(low: float, high: float) -> Optional[float]:
            # Drawn even when skipped, so that each change's value does not
            # depend on whether the others were applied.
            value = np.random.uniform(low, high)
            return value if np.random.randint(2) else None

        return Distortion(
            brightness=maybe(-self.brightness_delta, self.brightness_delta),
            contrast=maybe(*self.contrast_range),
            saturation=maybe(*self.saturation_range),
            hue=maybe(-self.hue_delta, self.hue_delta),
            contrast_last=bool(np.random.randint(2)))

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(
                'PhotoMetricDistortion needs an (H, W, 3) uint8 image, got '
                f'{img.dtype} of shape {img.shape}; load images without '
                'to_float32')
        draw = self._draw()
        results['img'] = self.distort(img, draw)
        return results

    @staticmethod
    def distort(img: np.ndarray, draw: Distortion) -> np.ndarray:
        """``img`` (H, W, 3) uint8 BGR changed as ``draw`` says."""
        first = _VALUES.copy()
        if draw.brightness is not None:
            first += draw.brightness
        contrast_first = draw.contrast is not None and not draw.contrast_last
        if contrast_first:
            # Clipped after the brightness, as two steps on uint8 would be.
            first = first.clip(0, 255) * draw.contrast
        if draw.brightness is not None or contrast_first:
            img = cv2.LUT(img, _table(first))
        if draw.saturation is not None or draw.hue is not None:
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            hue, saturation, value = cv2.split(hsv)
            if draw.hue is not None:
                # uint8 hue is degrees / 2, in [0, 180).
                hue = cv2.LUT(hue,
                              _table(np.rint(_VALUES + draw.hue / 2) % 180))
            if draw.saturation is not None:
                saturation = cv2.LUT(saturation,
                                     _table(_VALUES * draw.saturation))
            img = cv2.cvtColor(
                cv2.merge((hue, saturation, value)), cv2.COLOR_HSV2BGR)
        if draw.contrast is not None and draw.contrast_last:
            img = cv2.LUT(img, _table(_VALUES * draw.contrast))
        return img

    def __repr__(self) -> str:
        return (f'{type(self).__name__}('
                f'brightness_delta={self.brightness_delta}, '
                f'contrast_range={self.contrast_range}, '
                f'saturation_range={self.saturation_range}, '
                f'hue_delta={self.hue_delta})')
