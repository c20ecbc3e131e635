"""CachedMosaic: four images around a random centre, as RTMDet trains.

Layout on the (2h, 2w) canvas, (h, w) = ``img_scale``::

        +-------------------------------+
        |  pad      |                   |
        |    +------+-------+           |
        |    |  1   |   2   |   pad     |
        | ---+------C-------+---        |  C: centre, drawn in
        |    |  3   |   4   |           |     center_ratio_range * (w, h)
        |    +------+-------+           |
        +-------------------------------+

Image 1 (the current one) ends at C from the top left, 2 from the top
right, 3 from the bottom left, 4 from the bottom right; each is first
resized, keeping its aspect ratio, to fit (h, w), and what falls outside
the canvas is cut.
"""
from typing import List, Tuple, Union

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from tood.registry import TRANSFORMS
from .instances import clip_and_keep, concat_instances, get_instances
from .results_cache import ResultsCache

# Which side of the centre each image lies on: (left, top).
_CORNERS = ((True, True), (False, True), (True, False), (False, False))


def fit_resize(img: np.ndarray,
               size: Tuple[int, int]) -> Tuple[np.ndarray, float, float]:
    """``img`` resized to fit (height, width) ``size`` with its aspect
    ratio kept; also the horizontal and vertical factors applied."""
    height, width = img.shape[:2]
    scale = min(size[0] / height, size[1] / width)
    new_w, new_h = max(int(width * scale), 1), max(int(height * scale), 1)
    if (new_w, new_h) != (width, height):
        img = mmcv.imresize(img, (new_w, new_h))
    return img, new_w / width, new_h / height


@TRANSFORMS.register_module()
class CachedMosaic(BaseTransform):
    """Mosaic of the current image and three from a cache of recent ones,
    MMDetection's ``CachedMosaic`` (RTMDet), with its arguments.

    The current results join the cache first, and the other three images
    are drawn from it at random (the current one may be drawn again: in a
    new worker the first mosaics repeat the few images it has seen, where
    MMDetection passes its first four images unchanged; so the output is
    always (2h, 2w) with ``prob=1``, which a ``RandomAffine`` with a
    negative ``border`` after it needs). With probability ``1 - prob`` the
    results pass unchanged. Each image's boxes are scaled and shifted with
    it, clipped to the part of it that is on the canvas (with
    ``bbox_clip_border``), and dropped with their labels and ignore flags
    when nothing of them is left there. Images without boxes take part
    like any other.

    Required keys: img ((H, W, 3)), and optionally gt_bboxes,
    gt_bboxes_labels, gt_ignore_flags. Modified keys: img, img_shape
    ((2h, 2w)), and the three gt arrays.

    Args:
        img_scale: (h, w) each image is fitted into; the output is
            (2h, 2w).
        center_ratio_range: the centre's x is drawn in this range times w,
            its y times h; within [0, 2].
        bbox_clip_border: clip the boxes to their image's visible part.
        pad_val: value of the canvas where no image lies (one, or BGR).
        prob: probability of a mosaic.
        max_cached_images: the cache's size, at least 4.
        random_pop: when the cache is full, drop a random entry (else the
            oldest).
    """

    def __init__(self,
                 img_scale: Tuple[int, int] = (640, 640),
                 center_ratio_range: Tuple[float, float] = (0.5, 1.5),
                 bbox_clip_border: bool = True,
                 pad_val: Union[float, Tuple[float, float, float]] = 114.0,
                 prob: float = 1.0,
                 max_cached_images: int = 40,
                 random_pop: bool = True) -> None:
        if len(img_scale) != 2 or min(img_scale) <= 0:
            raise ValueError(
                f'img_scale must be (height, width) > 0, got {img_scale}')
        low, high = center_ratio_range
        if not 0 <= low <= high <= 2:
            raise ValueError('center_ratio_range must be (low, high) with '
                             f'0 <= low <= high <= 2, got '
                             f'{center_ratio_range}')
        if not 0 <= prob <= 1:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        if max_cached_images < 4:
            raise ValueError('max_cached_images must be at least 4, got '
                             f'{max_cached_images}')
        self.img_scale = tuple(int(s) for s in img_scale)
        self.center_ratio_range = (low, high)
        self.bbox_clip_border = bbox_clip_border
        self.pad_val = pad_val
        self.prob = prob
        self.cache = ResultsCache(max_cached_images, random_pop)

    @cache_randomness
    def _draw(self) -> Tuple[bool, List[dict], Tuple[int, int]]:
        """Whether to mix, the other three images and the centre (x, y)."""
        if np.random.uniform() > self.prob:
            return False, [], (0, 0)
        others = [self.cache.draw() for _ in range(3)]
        height, width = self.img_scale
        center_x = int(np.random.uniform(*self.center_ratio_range) * width)
        center_y = int(np.random.uniform(*self.center_ratio_range) * height)
        return True, others, (center_x, center_y)

    def transform(self, results: dict) -> dict:
        self.cache.push(results)
        mix, others, (center_x, center_y) = self._draw()
        if not mix:
            return results
        img = results['img']
        height, width = self.img_scale
        canvas = np.full((2 * height, 2 * width) + img.shape[2:],
                         self.pad_val, img.dtype)
        tiles = [dict(get_instances(results), img=img)] + others
        parts = []
        for (left, top), tile in zip(_CORNERS, tiles):
            tile_img, scale_x, scale_y = fit_resize(tile['img'],
                                                    self.img_scale)
            tile_h, tile_w = tile_img.shape[:2]
            # The tile's top-left corner on the canvas and its visible part.
            x0 = center_x - tile_w if left else center_x
            y0 = center_y - tile_h if top else center_y
            x1, y1 = max(x0, 0), max(y0, 0)
            x2 = min(x0 + tile_w, 2 * width)
            y2 = min(y0 + tile_h, 2 * height)
            canvas[y1:y2, x1:x2] = tile_img[y1 - y0:y2 - y0, x1 - x0:x2 - x0]
            instances = dict(tile)
            instances['gt_bboxes'] = (
                tile['gt_bboxes'] *
                np.array([scale_x, scale_y, scale_x, scale_y], np.float32) +
                np.array([x0, y0, x0, y0], np.float32))
            parts.append(
                clip_and_keep(
                    instances, (x1, y1, x2, y2),
                    clip=self.bbox_clip_border))
        results['img'] = canvas
        results['img_shape'] = canvas.shape[:2]
        if 'gt_bboxes' in results:
            results.update(concat_instances(parts))
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(img_scale={self.img_scale}, '
                f'center_ratio_range={self.center_ratio_range}, '
                f'bbox_clip_border={self.bbox_clip_border}, '
                f'pad_val={self.pad_val}, prob={self.prob}, '
                f'max_cached_images={self.cache.max_size}, '
                f'random_pop={self.cache.random_pop})')
