"""CocoDataset and AspectRatioBatchSampler on a tiny COCO file."""
import json
import logging

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler
from mmengine.registry import DefaultScope

import tood.datasets  # noqa: F401  (registers everything)
from tood.datasets import COCO_CLASSES, AspectRatioBatchSampler, CocoDataset
from tood.registry import DATA_SAMPLERS, DATASETS

# (file_name, width, height)
IMAGES = [('a.png', 64, 48), ('b.png', 40, 60), ('c.png', 50, 50),
          ('d.png', 20, 40), ('e.png', 48, 64)]
# (image index, category id, xywh, iscrowd)
ANNOTATIONS = [
    (0, 3, [4, 6, 20, 10], 0),
    (0, 7, [30, 8, 24, 30], 0),
    (0, 12, [2, 20, 10, 12], 1),  # crowd
    (0, 3, [10, 10, 0.5, 8], 0),  # narrower than a pixel
    (0, 7, [100, 100, 5, 5], 0),  # outside the image
    (1, 12, [5, 5, 20, 40], 0),
    (1, 3, [1, 1, 10, 10], 0),
    # image 2 has no annotation
    (3, 3, [2, 2, 10, 20], 0),  # tiny image
    (4, 7, [0, 0, 30, 30], 1),  # crowd only
]
CATEGORIES = [dict(id=3, name='circle'), dict(id=7, name='square'),
              dict(id=12, name='triangle')]


def other_warnings(records):
    """Warnings besides the one that lists the boxes the fixture makes
    unusable on purpose (they are dropped)."""
    return [
        r for r in records if r.levelno >= logging.WARNING
        and 'annotation(s) fixed' not in r.getMessage()
    ]


@pytest.fixture
def coco_root(tmp_path):
    (tmp_path / 'images').mkdir()
    rng = np.random.default_rng(0)
    images = []
    for i, (name, w, h) in enumerate(IMAGES):
        cv2.imwrite(str(tmp_path / 'images' / name),
                    rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        images.append(dict(id=100 + i, file_name=name, width=w, height=h))
    annotations = [
        dict(id=i + 1, image_id=100 + img, category_id=cat, bbox=box,
             area=box[2] * box[3], iscrowd=crowd)
        for i, (img, cat, box, crowd) in enumerate(ANNOTATIONS)
    ]
    with open(tmp_path / 'ann.json', 'w') as f:
        json.dump(
            dict(images=images, annotations=annotations,
                 categories=CATEGORIES), f)
    return tmp_path


def make_dataset(root, **kwargs):
    kwargs.setdefault('test_mode', True)
    return CocoDataset(
        ann_file='ann.json',
        data_root=str(root),
        data_prefix=dict(img='images/'),
        **kwargs)


def test_default_classes_fall_back_to_file_categories(coco_root,
                                                      log_records):
    ds = make_dataset(coco_root)
    assert CocoDataset.METAINFO['classes'] == COCO_CLASSES
    assert len(CocoDataset.METAINFO['palette']) == 80
    assert ds.metainfo['classes'] == ('circle', 'square', 'triangle')
    assert len(ds.metainfo['palette']) >= 3
    assert ds.cat_ids == [3, 7, 12]
    assert ds.cat2label == {3: 0, 7: 1, 12: 2}
    assert any(r.levelno == logging.INFO and 'sorted by id' in r.getMessage()
               for r in log_records)
    assert not other_warnings(log_records)


def test_data_list_records(coco_root):
    ds = make_dataset(coco_root)
    assert len(ds) == 5
    info = ds.get_data_info(0)
    assert info['img_id'] == 100
    assert info['img_path'] == str(coco_root / 'images' / 'a.png')
    assert (info['width'], info['height']) == (64, 48)
    # The sub-pixel box and the box outside the image are dropped.
    assert info['instances'] == [
        dict(bbox=[4.0, 6.0, 24.0, 16.0], bbox_label=0, ignore_flag=0),
        dict(bbox=[30.0, 8.0, 54.0, 38.0], bbox_label=1, ignore_flag=0),
        dict(bbox=[2.0, 20.0, 12.0, 32.0], bbox_label=2, ignore_flag=1),
    ]
    assert ds.get_data_info(2)['instances'] == []
    assert ds.get_cat_ids(1) == [2, 0]


def test_class_selection_and_reordering(coco_root, log_records):
    ds = make_dataset(coco_root, metainfo=dict(classes=('triangle',
                                                        'circle')))
    assert ds.metainfo['classes'] == ('triangle', 'circle')
    assert ds.cat_ids == [12, 3]
    warnings = other_warnings(log_records)
    assert len(warnings) == 1 and 'order' in warnings[0].getMessage()
    # 'square' boxes are dropped, labels follow the given order.
    labels = [[i['bbox_label'] for i in ds.get_data_info(k)['instances']]
              for k in range(len(ds))]
    assert labels == [[1, 0], [0, 1], [], [1], []]


def test_class_selection_in_file_order_does_not_warn(coco_root, log_records):
    ds = make_dataset(coco_root, metainfo=dict(classes=('circle',
                                                        'triangle')))
    assert ds.cat_ids == [3, 12]
    assert ds.get_cat_ids(0) == [0, 1]
    assert not other_warnings(log_records)


def test_unknown_class_raises(coco_root):
    with pytest.raises(ValueError, match='hexagon') as err:
        make_dataset(coco_root, metainfo=dict(classes=('circle', 'hexagon')))
    assert 'triangle' in str(err.value)  # lists the file's names


def test_filtering_only_outside_test_mode(coco_root):
    filter_cfg = dict(filter_empty_gt=True, min_size=32)
    train = make_dataset(coco_root, test_mode=False, filter_cfg=filter_cfg)
    # c: no box, d: shorter side 20, e: crowd box only.
    assert [train.get_data_info(i)['img_id']
            for i in range(len(train))] == [100, 101]
    only_size = make_dataset(
        coco_root, test_mode=False, filter_cfg=dict(min_size=32))
    assert len(only_size) == 4
    test = make_dataset(coco_root, test_mode=True, filter_cfg=filter_cfg)
    assert len(test) == 5


def test_pipeline_end_to_end(coco_root):
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(160, 96), keep_ratio=True),
        dict(type='RandomFlip', prob=1.0),
        dict(type='PackDetInputs'),
    ]
    with DefaultScope.overwrite_default_scope('tood'):
        ds = DATASETS.build(
            dict(
                type='CocoDataset',
                ann_file='ann.json',
                data_root=str(coco_root),
                data_prefix=dict(img='images/'),
                filter_cfg=dict(filter_empty_gt=True, min_size=32),
                pipeline=pipeline))
    assert len(ds) == 2

    out = ds[0]
    img = cv2.imread(str(coco_root / 'images' / 'a.png'))
    # 64x48 fits (160, 96) with factor 2 (the shorter side limits it).
    inputs = out['inputs']
    assert inputs.shape == (3, 96, 128) and inputs.dtype == torch.uint8
    resized = cv2.resize(img, (128, 96), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(inputs.permute(1, 2, 0).numpy(),
                                  resized[:, ::-1])
    sample = out['data_samples']
    assert sample.img_id == 100
    assert sample.ori_shape == (48, 64)
    assert sample.img_shape == (96, 128)
    assert sample.scale_factor == (2.0, 2.0)
    assert sample.flip is True and sample.flip_direction == 'horizontal'
    # x' = 128 - x after scaling by 2.
    expected = np.array([[128 - 48, 12, 128 - 8, 32],
                         [128 - 108, 16, 128 - 60, 76]], np.float32)
    np.testing.assert_allclose(sample.gt_instances.bboxes.numpy(), expected)
    assert sample.gt_instances.labels.tolist() == [0, 1]
    np.testing.assert_allclose(sample.ignored_instances.bboxes.numpy(),
                               [[128 - 24, 40, 128 - 4, 64]])

    # Portrait 40x60: the longer side is bounded by 160, the shorter by 96.
    sample = ds[1]['data_samples']
    assert sample.img_shape == (144, 96)
    np.testing.assert_allclose(sample.gt_instances.bboxes.numpy(),
                               [[96 - 60, 12, 96 - 12, 108],
                                [96 - 26.4, 2.4, 96 - 2.4, 26.4]],
                               rtol=1e-5)


class _FakeDataset:

    def __init__(self, sizes):
        self.sizes = sizes

    def __len__(self):
        return len(self.sizes)

    def get_data_info(self, idx):
        w, h = self.sizes[idx]
        return dict(width=w, height=h)


def _landscape(ds, idx):
    info = ds.get_data_info(idx)
    return info['width'] >= info['height']


def test_sampler_groups_by_orientation(coco_root):
    ds = make_dataset(coco_root)  # landscape: 0, 2; portrait: 1, 3, 4
    sampler = DefaultSampler(ds, shuffle=False)
    batches = list(AspectRatioBatchSampler(sampler, batch_size=2))
    assert batches == [[0, 2], [1, 3], [4]]
    dropped = AspectRatioBatchSampler(sampler, batch_size=2, drop_last=True)
    assert list(dropped) == [[0, 2], [1, 3]] and len(dropped) == 2

    built = DATA_SAMPLERS.build(
        dict(type='AspectRatioBatchSampler'),
        default_args=dict(sampler=sampler, batch_size=2))
    assert isinstance(built, AspectRatioBatchSampler) and len(built) == 3


@pytest.mark.parametrize('drop_last', [False, True])
def test_sampler_random_order(drop_last):
    rng = np.random.default_rng(1)
    ds = _FakeDataset([tuple(s) for s in rng.integers(10, 100, (23, 2))])
    sampler = DefaultSampler(ds, shuffle=True, seed=3)
    batch_sampler = AspectRatioBatchSampler(sampler, 4, drop_last=drop_last)
    batches = list(batch_sampler)
    assert len(batches) == len(batch_sampler) == (5 if drop_last else 6)
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))
    if not drop_last:
        assert sorted(flat) == list(range(23))
    # Only the batches made of the two remainders may mix orientations.
    n_landscape = sum(_landscape(ds, i) for i in range(23))
    n_full = n_landscape // 4 + (23 - n_landscape) // 4
    for batch in batches[:n_full]:
        assert len(batch) == 4
        assert len({_landscape(ds, i) for i in batch}) == 1
    assert flat != sorted(flat)  # the inner sampler's shuffle is kept
