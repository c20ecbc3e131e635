"""LoadAnnotations, PackDetInputs and mmcv's box-aware transforms."""
import numpy as np
import pytest
import torch
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

import tood.datasets  # noqa: F401  (registers everything)
from tood.datasets.transforms import LoadAnnotations, PackDetInputs
from tood.registry import TRANSFORMS
from tood.structures import DetDataSample

INSTANCES = [
    dict(bbox=[1.0, 2.0, 11.0, 12.0], bbox_label=4, ignore_flag=0),
    dict(bbox=[5.0, 3.0, 30.0, 20.0], bbox_label=0, ignore_flag=1),
    dict(bbox=[20.0, 4.0, 39.0, 29.0], bbox_label=2, ignore_flag=0),
]


def build(cfgs):
    with DefaultScope.overwrite_default_scope('tood'):
        return Compose(cfgs)


def image(h=30, w=40):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def loaded(h=30, w=40):
    results = dict(img=image(h, w), img_shape=(h, w), ori_shape=(h, w),
                   instances=INSTANCES, img_id=7)
    return LoadAnnotations()(results)


def test_registry_holds_mmcv_transforms():
    for name in ('LoadImageFromFile', 'Resize', 'RandomResize',
                 'RandomChoiceResize', 'RandomFlip', 'Pad', 'RandomApply',
                 'RandomChoice', 'LoadAnnotations', 'PackDetInputs'):
        assert name in TRANSFORMS.module_dict, name


def test_load_annotations():
    results = loaded()
    assert results['gt_bboxes'].dtype == np.float32
    np.testing.assert_array_equal(results['gt_bboxes'],
                                  [i['bbox'] for i in INSTANCES])
    assert results['gt_bboxes_labels'].dtype == np.int64
    assert results['gt_bboxes_labels'].tolist() == [4, 0, 2]
    assert results['gt_ignore_flags'].dtype == bool
    assert results['gt_ignore_flags'].tolist() == [False, True, False]

    empty = LoadAnnotations()(dict(instances=[]))
    assert empty['gt_bboxes'].shape == (0, 4)
    assert empty['gt_bboxes'].dtype == np.float32
    assert empty['gt_bboxes_labels'].shape == (0, )
    assert empty['gt_bboxes_labels'].dtype == np.int64
    assert empty['gt_ignore_flags'].shape == (0, )
    with pytest.raises(ValueError):
        LoadAnnotations(with_bbox=False)


def test_resize_keep_ratio_scales_boxes_like_the_image():
    # 40x30 into (1333, 800): the shorter side limits the factor to 800/30.
    results = build([dict(type='Resize', scale=(1333, 800),
                          keep_ratio=True)])(loaded())
    assert results['img'].shape == (800, 1067, 3)
    assert results['img_shape'] == (800, 1067)
    w_scale, h_scale = results['scale_factor']
    assert w_scale == pytest.approx(1067 / 40)
    assert h_scale == pytest.approx(800 / 30)
    expected = np.array([i['bbox'] for i in INSTANCES]) * [
        w_scale, h_scale, w_scale, h_scale
    ]
    np.testing.assert_allclose(results['gt_bboxes'], expected, rtol=1e-5)
    # mmcv's Resize returns float64 boxes; PackDetInputs casts them back.
    assert np.issubdtype(results['gt_bboxes'].dtype, np.floating)

    # A tall image: now the longer side limits it, to 1333/120.
    results = build([dict(type='Resize', scale=(1333, 800),
                          keep_ratio=True)])(loaded(h=120, w=40))
    assert results['img_shape'] == (1333, 444)


def test_random_choice_resize_builds_inner_resize_in_our_scope():
    results = build([
        dict(type='RandomChoiceResize', scales=[(80, 60)], keep_ratio=False)
    ])(loaded())
    assert results['img_shape'] == (60, 80)
    np.testing.assert_allclose(results['gt_bboxes'][0], [2, 4, 22, 24])


def test_random_flip_boxes():
    results = build([dict(type='RandomFlip', prob=1.0)])(loaded())
    assert results['flip'] is True
    assert results['flip_direction'] == 'horizontal'
    np.testing.assert_array_equal(results['img'], image()[:, ::-1])
    np.testing.assert_array_equal(
        results['gt_bboxes'],
        [[29, 2, 39, 12], [10, 3, 35, 20], [1, 4, 20, 29]])

    results = build([dict(type='RandomFlip', prob=1.0,
                          direction='vertical')])(loaded())
    np.testing.assert_array_equal(results['gt_bboxes'][0], [1, 18, 11, 28])

    results = build([dict(type='RandomFlip', prob=0.0)])(loaded())
    assert results['flip'] is False
    np.testing.assert_array_equal(results['gt_bboxes'][0], [1, 2, 11, 12])


def test_pack_det_inputs():
    results = build([
        dict(type='Resize', scale=(80, 60), keep_ratio=True),
        dict(type='RandomFlip', prob=1.0),
        dict(type='PackDetInputs'),
    ])(loaded())
    inputs = results['inputs']
    assert isinstance(inputs, torch.Tensor)
    assert inputs.dtype == torch.uint8 and inputs.shape == (3, 60, 80)
    assert inputs.is_contiguous()

    sample = results['data_samples']
    assert isinstance(sample, DetDataSample)
    gt = sample.gt_instances
    assert gt.bboxes.dtype == torch.float32 and gt.bboxes.shape == (2, 4)
    assert gt.labels.dtype == torch.int64 and gt.labels.tolist() == [4, 2]
    np.testing.assert_allclose(gt.bboxes[0].numpy(), [58, 4, 78, 24])
    ignored = sample.ignored_instances
    assert ignored.labels.tolist() == [0]
    np.testing.assert_allclose(ignored.bboxes.numpy(), [[20, 6, 70, 40]])
    assert set(sample.metainfo) == {
        'img_id', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
        'flip_direction'
    }
    assert sample.img_id == 7 and sample.ori_shape == (30, 40)


def test_pack_det_inputs_keeps_channel_order_and_handles_no_annotations():
    img = image()
    out = PackDetInputs(meta_keys=('img_id', 'instances'))(
        dict(img=img, img_id=3, instances=INSTANCES))
    np.testing.assert_array_equal(out['inputs'].numpy(),
                                  img.transpose(2, 0, 1))
    sample = out['data_samples']
    assert sample.metainfo == dict(img_id=3, instances=INSTANCES)
    assert isinstance(sample.gt_instances, InstanceData)
    assert len(sample.gt_instances) == 0
    assert 'bboxes' not in sample.gt_instances

    empty = PackDetInputs()(LoadAnnotations()(dict(img=img, instances=[])))
    assert empty['data_samples'].gt_instances.bboxes.shape == (0, 4)
    assert empty['data_samples'].ignored_instances.labels.shape == (0, )

    with pytest.raises(ValueError, match='color'):
        PackDetInputs()(dict(img=img[..., 0]))


def _crop_input():
    img = np.arange(64 * 80 * 3, dtype=np.uint8).reshape(64, 80, 3)
    return dict(
        img=img,
        img_shape=(64, 80),
        gt_bboxes=np.array(
            [[0, 0, 10, 10], [20, 10, 60, 50], [70, 50, 80, 64]], np.float32),
        gt_bboxes_labels=np.array([0, 1, 2]),
        gt_ignore_flags=np.array([False, True, False]))


def test_random_crop_shifts_clips_and_drops_boxes():
    crop = TRANSFORMS.build(dict(type='RandomCrop', crop_size=(32, 48)))
    crop._offset = lambda h, w: (8, 16)  # y, x
    data = _crop_input()
    out = crop(dict(data))
    np.testing.assert_array_equal(out['img'], data['img'][8:40, 16:64])
    assert out['img_shape'] == (32, 48)
    # box 0 lies left of the window; box 1 is clipped at the bottom; box 2
    # lies right of it.
    np.testing.assert_array_equal(out['gt_bboxes'], [[4, 2, 44, 32]])
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [1])
    np.testing.assert_array_equal(out['gt_ignore_flags'], [True])


def test_random_crop_offsets_are_uniform_and_inside():
    crop = TRANSFORMS.build(dict(type='RandomCrop', crop_size=(32, 48)))
    np.random.seed(0)
    offsets = {crop._offset(64, 80) for _ in range(2000)}
    assert {y for y, _ in offsets} == set(range(33))
    assert {x for _, x in offsets} == set(range(33))
    # A side shorter than the window is kept whole.
    out = crop(dict(img=np.zeros((20, 100, 3), np.uint8), img_shape=(20, 100)))
    assert out['img'].shape == (20, 48, 3) and out['img_shape'] == (20, 48)


def test_random_crop_without_boxes_left():
    data = _crop_input()
    data['gt_bboxes'] = data['gt_bboxes'][:1]
    data['gt_bboxes_labels'] = data['gt_bboxes_labels'][:1]
    data['gt_ignore_flags'] = data['gt_ignore_flags'][:1]
    strict = TRANSFORMS.build(dict(type='RandomCrop', crop_size=(32, 32)))
    strict._offset = lambda h, w: (30, 40)
    # None makes the dataset draw another image.
    assert strict(dict(data)) is None
    lenient = TRANSFORMS.build(
        dict(type='RandomCrop', crop_size=(32, 32), allow_negative_crop=True))
    lenient._offset = lambda h, w: (30, 40)
    out = lenient(dict(data))
    assert out['gt_bboxes'].shape == (0, 4)
    assert len(out['gt_bboxes_labels']) == len(out['gt_ignore_flags']) == 0
    # An image without boxes stays valid.
    empty = dict(data, gt_bboxes=np.zeros((0, 4), np.float32),
                 gt_bboxes_labels=np.zeros(0, np.int64),
                 gt_ignore_flags=np.zeros(0, bool))
    assert strict(empty) is not None
