"""RandomAffine: rotate, scale, shear and shift an image and its boxes, with
MMDetection's arguments. The image is warped by OpenCV (``warpAffine``)."""
import math
from typing import Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from tood.registry import TRANSFORMS
from .instances import clip_and_keep, get_instances


def _translation(x: float, y: float) -> np.ndarray:
    return np.array([[1, 0, x], [0, 1, y], [0, 0, 1]], np.float64)


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The axis-aligned boxes (n, 4) xyxy around the images of ``boxes``'
    corners under the (3, 3) affine ``matrix``; they contain the
    transformed boxes (exactly so for scaling and shifting alone)."""
    corners = boxes[:, [0, 1, 2, 1, 0, 3, 2, 3]].reshape(-1, 4, 2)
    moved = corners @ matrix[:2, :2].T + matrix[:2, 2]
    return np.concatenate([moved.min(axis=1), moved.max(axis=1)],
                          axis=1).astype(np.float32)


@TRANSFORMS.register_module()
class RandomAffine(BaseTransform):
    """A random affine warp of the image, its boxes following.

    Draws a rotation angle in [-max_rotate_degree, max_rotate_degree], a
    scale in ``scaling_ratio_range``, shear angles in [-max_shear_degree,
    max_shear_degree] and a shift of up to ``max_translate_ratio`` of the
    output's width and height, as MMDetection's ``RandomAffine``. Rotation,
    scaling and shear are about the image centre, which lands on the
    output's centre before the shift (MMDetection's turn about the top-left
    corner). The output is ``border`` larger on each side: (height, width),
    negative to cut, e.g. ``border=(-h // 2, -w // 2)`` after a ``Mosaic``
    of tiles of (h, w) gives an output of (h, w).

    A box becomes the axis-aligned box around its transformed corners
    (which, with rotation or shear, is larger than the object), then is
    clipped to the output (``bbox_clip_border``). A box whose part inside
    the output is not wider and higher than ``min_bbox_size`` is dropped
    with its label and ignore flag.

    Required keys: img, and optionally gt_bboxes, gt_bboxes_labels,
    gt_ignore_flags. Modified keys: img, img_shape, and the three gt arrays.

    Args:
        max_rotate_degree: largest rotation, degrees.
        max_translate_ratio: largest shift, as a fraction of the output's
            width (horizontally) and height (vertically), in [0, 1].
        scaling_ratio_range: (low, high) of the scale, 0 < low <= high.
        max_shear_degree: largest shear angle, degrees.
        border: (height, width) pixels added to each side of the output.
        border_val: BGR value of the pixels the image does not cover.
        bbox_clip_border: clip the boxes to the output; if False they keep
            their parts outside it (a box with nothing inside is dropped
            all the same).
        min_bbox_size: pixels; 0 drops only boxes with nothing left inside.
    """

    def __init__(self,
                 max_rotate_degree: float = 10.0,
                 max_translate_ratio: float = 0.1,
                 scaling_ratio_range: Tuple[float, float] = (0.5, 1.5),
                 max_shear_degree: float = 2.0,
                 border: Tuple[int, int] = (0, 0),
                 border_val: Tuple[int, int, int] = (114, 114, 114),
                 bbox_clip_border: bool = True,
                 min_bbox_size: float = 0.0) -> None:
        if not 0 <= max_translate_ratio <= 1:
            raise ValueError('max_translate_ratio must be in [0, 1], got '
                             f'{max_translate_ratio}')
        low, high = scaling_ratio_range
        if not 0 < low <= high:
            raise ValueError('scaling_ratio_range must be (low, high) with '
                             f'0 < low <= high, got {scaling_ratio_range}')
        if len(border) != 2:
            raise ValueError(
                f'border must be (height, width) pixels, got {border}')
        self.max_rotate_degree = max_rotate_degree
        self.max_translate_ratio = max_translate_ratio
        self.scaling_ratio_range = (low, high)
        self.max_shear_degree = max_shear_degree
        self.border = tuple(int(b) for b in border)
        self.border_val = tuple(border_val)
        self.bbox_clip_border = bbox_clip_border
        self.min_bbox_size = min_bbox_size

    @cache_randomness
    def _matrix(self, in_size: Tuple[int, int],
                out_size: Tuple[int, int]) -> np.ndarray:
        """The (3, 3) map from input to output pixel coordinates (both
        continuous: pixel (i, j) covers [j, j+1) x [i, i+1)); sizes are
        (height, width)."""
        angle = math.radians(
            np.random.uniform(-self.max_rotate_degree,
                              self.max_rotate_degree))
        scale = np.random.uniform(*self.scaling_ratio_range)
        shear_x, shear_y = (
            math.tan(math.radians(d)) for d in np.random.uniform(
                -self.max_shear_degree, self.max_shear_degree, size=2))
        shift_x, shift_y = np.random.uniform(
            -self.max_translate_ratio, self.max_translate_ratio,
            size=2) * (out_size[1], out_size[0])

        cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
        rotate_scale = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])
        shear = np.array([[1, shear_x, 0], [shear_y, 1, 0], [0, 0, 1]])
        return (_translation(out_size[1] / 2 + shift_x,
                             out_size[0] / 2 + shift_y) @ shear
                @ rotate_scale
                @ _translation(-in_size[1] / 2, -in_size[0] / 2))

    def transform(self, results: dict) -> dict:
        img = results['img']
        in_size = img.shape[:2]
        out_size = (in_size[0] + 2 * self.border[0],
                    in_size[1] + 2 * self.border[1])
        if min(out_size) <= 0:
            raise ValueError(
                f'RandomAffine: border {self.border} leaves nothing of an '
                f'image of {in_size[1]}x{in_size[0]} (width x height)')
        matrix = self._matrix(in_size, out_size)
        # OpenCV's pixel (i, j) is the point (j, i), ours (j + 0.5, i + 0.5).
        pixel_matrix = _translation(-0.5, -0.5) @ matrix @ _translation(
            0.5, 0.5)
        results['img'] = cv2.warpAffine(
            img,
            pixel_matrix[:2],
            dsize=(out_size[1], out_size[0]),
            flags=cv2.INTER_LINEAR,
            borderValue=self.border_val)
        results['img_shape'] = out_size
        if 'gt_bboxes' in results:
            instances = get_instances(results)
            instances['gt_bboxes'] = transform_boxes(instances['gt_bboxes'],
                                                     matrix)
            results.update(
                clip_and_keep(
                    instances, (0, 0, out_size[1], out_size[0]),
                    clip=self.bbox_clip_border,
                    min_size=self.min_bbox_size))
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}('
                f'max_rotate_degree={self.max_rotate_degree}, '
                f'max_translate_ratio={self.max_translate_ratio}, '
                f'scaling_ratio_range={self.scaling_ratio_range}, '
                f'max_shear_degree={self.max_shear_degree}, '
                f'border={self.border}, border_val={self.border_val}, '
                f'bbox_clip_border={self.bbox_clip_border}, '
                f'min_bbox_size={self.min_bbox_size})')
