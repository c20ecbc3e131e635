"""CachedMixUp: the current image blended half and half with a scaled,
possibly flipped, shifted image from a cache of recent ones (YOLOX's
MixUp, as RTMDet trains it)."""
from typing import Optional, Tuple, Union

import cv2
import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from tood.registry import TRANSFORMS
from .instances import clip_and_keep, concat_instances, get_instances
from .mosaic import fit_resize
from .results_cache import ResultsCache


@TRANSFORMS.register_module()
class CachedMixUp(BaseTransform):
    """Blend the current image with one from a cache of recent ones,
    MMDetection's ``CachedMixUp`` (RTMDet), with its arguments.

    The current results join the cache first. Until it holds two images,
    and otherwise with probability ``1 - prob``, they pass unchanged. The
    other image (one with boxes, tried up to ``max_iters`` times; without
    one the results pass unchanged) is fitted into ``img_scale`` (aspect
    ratio kept) at the top left of a ``pad_val`` canvas, canvas and image
    are scaled by a factor drawn from ``ratio_range``, flipped left-right
    with probability ``flip_ratio``, and a window of the current image's
    size is cut at a random place of that canvas (padded with ``pad_val``
    to at least the window). Window and current image are averaged with
    equal weights; the boxes of both are kept, the other image's clipped to
    its visible part (``bbox_clip_border``) and dropped with their labels
    and ignore flags when nothing of them is left. MMDetection pads with 0
    beyond the scaled canvas; here it is ``pad_val`` throughout.

    Required keys: img ((H, W, 3)), and optionally gt_bboxes,
    gt_bboxes_labels, gt_ignore_flags. Modified keys: img and the three gt
    arrays (the image keeps its size).

    Args:
        img_scale: (h, w) the other image is fitted into.
        ratio_range: (low, high) of the scale factor.
        flip_ratio: probability of flipping the other image.
        pad_val: value where the other image does not reach (one, or
            BGR).
        max_iters: tries at drawing an image with boxes.
        bbox_clip_border: clip the other image's boxes to its visible part.
        max_cached_images: the cache's size, at least 2.
        random_pop: when the cache is full, drop a random entry (else the
            oldest).
        prob: probability of a mix once the cache holds two images.
    """

    def __init__(self,
                 img_scale: Tuple[int, int] = (640, 640),
                 ratio_range: Tuple[float, float] = (0.5, 1.5),
                 flip_ratio: float = 0.5,
                 pad_val: Union[float, Tuple[float, float, float]] = 114.0,
                 max_iters: int = 15,
                 bbox_clip_border: bool = True,
                 max_cached_images: int = 20,
                 random_pop: bool = True,
                 prob: float = 1.0) -> None:
        if len(img_scale) != 2 or min(img_scale) <= 0:
            raise ValueError(
                f'img_scale must be (height, width) > 0, got {img_scale}')
        low, high = ratio_range
        if not 0 < low <= high:
            raise ValueError('ratio_range must be (low, high) with '
                             f'0 < low <= high, got {ratio_range}')
        for name, value in (('flip_ratio', flip_ratio), ('prob', prob)):
            if not 0 <= value <= 1:
                raise ValueError(f'{name} must be in [0, 1], got {value}')
        if max_iters < 1:
            raise ValueError(f'max_iters must be at least 1, got {max_iters}')
        if max_cached_images < 2:
            raise ValueError('max_cached_images must be at least 2, got '
                             f'{max_cached_images}')
        self.img_scale = tuple(int(s) for s in img_scale)
        self.ratio_range = (low, high)
        self.flip_ratio = flip_ratio
        self.pad_val = pad_val
        self.max_iters = max_iters
        self.bbox_clip_border = bbox_clip_border
        self.prob = prob
        self.cache = ResultsCache(max_cached_images, random_pop)

    @cache_randomness
    def _draw(self) -> Tuple[Optional[dict], float, bool, float, float]:
        """The other image (None: no mix), the scale factor, whether to
        flip, and where the window starts, as fractions of the room."""
        if np.random.uniform() > self.prob:
            return None, 1.0, False, 0.0, 0.0
        for _ in range(self.max_iters):
            other = self.cache.draw()
            if len(other['gt_bboxes']):
                break
        factor = np.random.uniform(*self.ratio_range)
        flip = np.random.uniform() < self.flip_ratio
        return other, factor, flip, np.random.uniform(), np.random.uniform()

    def transform(self, results: dict) -> dict:
        self.cache.push(results)
        if len(self.cache) <= 1:
            return results
        other, factor, flip, where_x, where_y = self._draw()
        if other is None or not len(other['gt_bboxes']):
            return results
        img = results['img']
        out_h, out_w = img.shape[:2]

        fitted, _, _ = fit_resize(other['img'], self.img_scale)
        size = (max(int(fitted.shape[1] * factor), 1),
                max(int(fitted.shape[0] * factor), 1))
        scaled = fitted if size == fitted.shape[1::-1] else mmcv.imresize(
            fitted, size)
        scaled_h, scaled_w = scaled.shape[:2]
        scale_x = scaled_w / other['img'].shape[1]
        scale_y = scaled_h / other['img'].shape[0]
        # The scaled canvas; the image is at its left, or its right when
        # flipped with it.
        canvas_h = int(self.img_scale[0] * factor)
        canvas_w = int(self.img_scale[1] * factor)
        img_x = canvas_w - scaled_w if flip else 0
        if flip:
            scaled = scaled[:, ::-1]
        # The window: (out_h, out_w) at (win_x, win_y) of the canvas padded
        # to at least its size.
        win_x = int(where_x * (max(canvas_w, out_w) - out_w + 1))
        win_y = int(where_y * (max(canvas_h, out_h) - out_h + 1))
        # The other image's part inside the window, in window pixels.
        x1, y1 = max(img_x - win_x, 0), max(-win_y, 0)
        x2 = min(img_x + scaled_w - win_x, out_w)
        y2 = min(scaled_h - win_y, out_h)
        layer = np.full_like(img, self.pad_val)
        if x2 > x1 and y2 > y1:
            layer[y1:y2, x1:x2] = scaled[y1 + win_y:y2 + win_y,
                                         x1 + win_x - img_x:x2 + win_x -
                                         img_x]
        results['img'] = cv2.addWeighted(img, 0.5, layer, 0.5, 0)
        if 'gt_bboxes' not in results:
            return results

        boxes = other['gt_bboxes'] * np.array(
            [scale_x, scale_y, scale_x, scale_y], np.float32)
        if flip:
            boxes = np.stack([
                scaled_w - boxes[:, 2], boxes[:, 1], scaled_w - boxes[:, 0],
                boxes[:, 3]
            ], axis=1)
        boxes += np.array(
            [img_x - win_x, -win_y, img_x - win_x, -win_y], np.float32)
        added = clip_and_keep(
            dict(other, gt_bboxes=boxes), (x1, y1, x2, y2),
            clip=self.bbox_clip_border)
        results.update(concat_instances([get_instances(results), added]))
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(img_scale={self.img_scale}, '
                f'ratio_range={self.ratio_range}, '
                f'flip_ratio={self.flip_ratio}, pad_val={self.pad_val}, '
                f'max_iters={self.max_iters}, '
                f'bbox_clip_border={self.bbox_clip_border}, '
                f'max_cached_images={self.cache.max_size}, '
                f'random_pop={self.cache.random_pop}, prob={self.prob})')
