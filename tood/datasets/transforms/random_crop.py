"""RandomCrop: a fixed-size window of the image at a random place, with
its boxes, as MMDetection's ``RandomCrop`` with ``crop_type='absolute'``."""
from typing import Optional, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from tood.registry import TRANSFORMS
from .instances import clip_and_keep, get_instances


@TRANSFORMS.register_module()
class RandomCrop(BaseTransform):
    """Cut a ``crop_size`` (h, w) window at a uniformly random offset.

    Boxes are shifted into the window and clipped to it; a box with no area
    left inside is dropped with its label and ignore flag. An image smaller
    than the window is cut to its own size on that side (no padding).

    Required keys: img, and optionally gt_bboxes, gt_bboxes_labels,
    gt_ignore_flags. Modified keys: img, img_shape, and the three gt arrays.

    Args:
        crop_size: (h, w) of the window in pixels.
        allow_negative_crop: keep a crop that has lost every box of an image
            that had some. If False the transform returns None, and the
            dataset draws another image instead.
    """

    def __init__(self,
                 crop_size: Tuple[int, int],
                 allow_negative_crop: bool = False) -> None:
        if len(crop_size) != 2 or min(crop_size) <= 0:
            raise ValueError(f'crop_size must be (h, w) > 0, got {crop_size}')
        self.crop_size = tuple(int(s) for s in crop_size)
        self.allow_negative_crop = allow_negative_crop

    @cache_randomness
    def _offset(self, height: int, width: int) -> Tuple[int, int]:
        y = np.random.randint(0, max(height - self.crop_size[0], 0) + 1)
        x = np.random.randint(0, max(width - self.crop_size[1], 0) + 1)
        return y, x

    def transform(self, results: dict) -> Optional[dict]:
        img = results['img']
        height, width = img.shape[:2]
        y, x = self._offset(height, width)
        h = min(self.crop_size[0], height)
        w = min(self.crop_size[1], width)
        results['img'] = img[y:y + h, x:x + w]
        results['img_shape'] = (h, w)
        if 'gt_bboxes' not in results:
            return results
        instances = get_instances(results)
        instances['gt_bboxes'] = instances['gt_bboxes'] - np.array(
            [x, y, x, y], np.float32)
        kept = clip_and_keep(instances, (0, 0, w, h))
        if (len(instances['gt_bboxes']) and not len(kept['gt_bboxes'])
                and not self.allow_negative_crop):
            return None
        results.update(kept)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(crop_size={self.crop_size}, '
                f'allow_negative_crop={self.allow_negative_crop})')
