"""time_pipeline: a row per transform in pipeline order, then the whole."""
import numpy as np
import pytest
from mmengine.dataset import BaseDataset, ClassBalancedDataset
from mmengine.registry import DefaultScope

import tood.datasets  # noqa: F401  (registers the transforms)
from tood.analysis.pipeline_timing import time_pipeline


class ArrayDataset(BaseDataset):
    """Five 24x32 images with one box each, held in memory."""

    def load_data_list(self):
        return [
            dict(
                img=np.full((24, 32, 3), i, np.uint8),
                gt_bboxes=np.array([[1, 1, 9, 9]], np.float32),
                gt_bboxes_labels=np.array([i % 2]),
                gt_ignore_flags=np.array([False])) for i in range(5)
        ]

    def get_cat_ids(self, idx):
        return self.get_data_info(idx)['gt_bboxes_labels'].tolist()


def dataset(pipeline):
    with DefaultScope.overwrite_default_scope('tood'):
        return ArrayDataset(pipeline=pipeline, serialize_data=False)


def test_rows_in_pipeline_order_and_the_whole():
    data = dataset([
        dict(type='CachedMosaic', img_scale=(24, 32)),
        dict(type='PhotoMetricDistortion'),
        dict(type='PackDetInputs')
    ])
    rows = time_pipeline(data, num_images=7, warmup=3)
    assert [name for name, _ in rows] == [
        'CachedMosaic', 'PhotoMetricDistortion', 'PackDetInputs', 'all'
    ]
    assert all(ms > 0 for _, ms in rows)
    assert rows[-1][1] >= max(ms for _, ms in rows[:-1])
    # Inside a wrapper, the wrapped dataset's pipeline.
    wrapped = ClassBalancedDataset(data, oversample_thr=1.0)
    assert [name for name, _ in time_pipeline(wrapped, 2, 0)][0] == \
        'CachedMosaic'


def test_images_a_transform_drops_end_there():
    # A 4x4 crop at the corner away from the box leaves no box, so
    # RandomCrop returns None: what follows it is not timed for the image.
    data = dataset([
        dict(type='RandomCrop', crop_size=(4, 4)),
        dict(type='PackDetInputs')
    ])
    crop = data.pipeline.transforms[0]
    crop._offset = lambda height, width: (20, 28)
    rows = dict(time_pipeline(data, num_images=4, warmup=0))
    assert rows['RandomCrop'] > 0 and rows['PackDetInputs'] == 0


def test_needs_a_pipeline():
    with pytest.raises(ValueError, match='no pipeline'):
        time_pipeline([1, 2, 3])
