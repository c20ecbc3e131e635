"""Packing a pipeline's results into the model's inputs."""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import InstanceData

from tood.registry import TRANSFORMS
from tood.structures import DetDataSample


@TRANSFORMS.register_module()
class PackDetInputs(BaseTransform):
    """Image tensor plus a DetDataSample, the format models consume.

    Returns ``dict(inputs, data_samples)``:
        inputs: (3, H, W) uint8 tensor, contiguous, channels as loaded (BGR
            from ``LoadImageFromFile``). Images must be 3-channel, which
            ``LoadImageFromFile``'s default ``color_type='color'`` ensures
            even for grayscale files.
        data_samples: ``DetDataSample`` whose ``gt_instances`` hold the
            non-ignored boxes (``bboxes`` (G, 4) float32, ``labels`` (G,)
            int64) and ``ignored_instances`` the crowd ones; both are empty
            InstanceData when the pipeline loaded no annotations. Its
            metainfo holds those ``meta_keys`` present in the results.
    """

    def __init__(self,
                 meta_keys: Sequence[str] = ('img_id', 'img_path',
                                             'ori_shape', 'img_shape',
                                             'scale_factor', 'flip',
                                             'flip_direction')) -> None:
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(
                f'expected an (H, W, 3) image, got shape {img.shape}; load '
                "images with color_type='color'")
        # Flipped images are negative-stride views, which torch rejects:
        # copying while transposing also yields the contiguous layout.
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))

        gt_instances = InstanceData()
        ignored_instances = InstanceData()
        if 'gt_bboxes' in results:
            bboxes = np.asarray(results['gt_bboxes'], dtype=np.float32)
            labels = np.asarray(results['gt_bboxes_labels'], dtype=np.int64)
            ignore = results.get('gt_ignore_flags')
            if ignore is None:
                ignore = np.zeros(len(bboxes), dtype=bool)
            ignore = np.asarray(ignore, dtype=bool)
            gt_instances.bboxes = torch.from_numpy(bboxes[~ignore])
            gt_instances.labels = torch.from_numpy(labels[~ignore])
            ignored_instances.bboxes = torch.from_numpy(bboxes[ignore])
            ignored_instances.labels = torch.from_numpy(labels[ignore])

        data_sample = DetDataSample(metainfo={
            key: results[key]
            for key in self.meta_keys if key in results
        })
        data_sample.gt_instances = gt_instances
        data_sample.ignored_instances = ignored_instances
        return dict(inputs=inputs, data_samples=data_sample)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(meta_keys={self.meta_keys})'
