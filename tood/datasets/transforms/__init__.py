"""Data transforms of the tood scope.

mmcv's generic transforms are registered in mmcv's scope; registering the
ones our configs use here lets them build under ``default_scope='tood'``
(also when mmcv's wrappers, e.g. RandomChoiceResize, build their inner
``Resize`` through the current scope). ``LoadImageFromFile`` is our
subclass of mmcv's, whose errors name the file.
"""
from mmcv.transforms import (Pad, RandomApply, RandomChoice,
                             RandomChoiceResize, RandomFlip, RandomResize,
                             Resize)

from tood.registry import TRANSFORMS
from .formatting import PackDetInputs
from .image_loading import LoadImageFromFile
from .loading import LoadAnnotations
from .mixup import CachedMixUp
from .mosaic import CachedMosaic
from .photometric import PhotoMetricDistortion
from .random_affine import RandomAffine
from .random_crop import RandomCrop

for _transform in (Resize, RandomResize, RandomChoiceResize, RandomFlip, Pad,
                   RandomApply, RandomChoice):
    TRANSFORMS.register_module(module=_transform)

__all__ = [
    'LoadAnnotations', 'PackDetInputs', 'LoadImageFromFile',
    'RandomCrop', 'CachedMosaic', 'CachedMixUp', 'PhotoMetricDistortion',
    'RandomAffine',
    'Resize', 'RandomResize', 'RandomChoiceResize', 'RandomFlip', 'Pad',
    'RandomApply', 'RandomChoice'
]
