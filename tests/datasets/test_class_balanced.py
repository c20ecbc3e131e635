"""mmengine's ClassBalancedDataset (repeat-factor sampling, LVIS) over our
COCO and VOC datasets: the repeat factors against the formula on known
class counts, distributed samplers, batches and the cached mosaic."""
import json
import math
import os
import os.path as osp
from collections import Counter

import cv2
import numpy as np
import pytest
from mmengine.dataset import ClassBalancedDataset, DefaultSampler
from mmengine.registry import DefaultScope

import tood.datasets  # noqa: F401  (registers everything)
from tood.datasets import AspectRatioBatchSampler
from tood.registry import DATASETS

CLASSES = ('common', 'medium', 'rare')
# Image i: its (class, ignored) boxes. 11 images: 'common' in 8, 'medium'
# in 3, 'rare' in 2 (once as an ignored box: a COCO crowd region, a VOC
# difficult object, counted as MMDetection counts it), one without boxes.
IMAGES = [
    [('common', False)],
    [('common', False), ('medium', False)],
    [('common', False), ('common', False)],
    [('common', False)],
    [('common', False), ('medium', False), ('rare', True)],
    [('common', False)],
    [('common', False)],
    [('common', False)],
    [('medium', False)],
    [('rare', False)],
    [],
]
THRESHOLD = 1.0


def expected_factors(threshold=THRESHOLD):
    """r(c) = max(1, sqrt(t / f(c))), f(c) the fraction of images with c;
    r(image) = max over its classes, 1 without any."""
    freq = Counter(name for boxes in IMAGES
                   for name in {name for name, _ in boxes})
    class_factor = {
        name: max(1.0, math.sqrt(threshold / (count / len(IMAGES))))
        for name, count in freq.items()
    }
    return [
        max([class_factor[name] for name, _ in boxes], default=1.0)
        for boxes in IMAGES
    ]


def write_images(folder, names, size=(48, 64)):
    os.makedirs(folder, exist_ok=True)
    for i, name in enumerate(names):
        img = np.full(size + (3, ), 40 * (i % 6), np.uint8)
        cv2.imwrite(osp.join(folder, name), img)


def box(i, k):
    """Box k of image i: [x, y, w, h], inside a 64x48 image."""
    return [2 + 20 * k, 2 + 2 * (i % 5), 16, 14]


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco'))
    names = [f'{i:03d}.jpg' for i in range(len(IMAGES))]
    write_images(osp.join(root, 'images'), names)
    cat_ids = {'common': 3, 'medium': 7, 'rare': 11}  # not contiguous
    annotations = []
    for i, boxes in enumerate(IMAGES):
        for k, (name, ignored) in enumerate(boxes):
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=i + 1,
                    category_id=cat_ids[name],
                    bbox=box(i, k),
                    area=16 * 14,
                    iscrowd=int(ignored)))
    data = dict(
        images=[
            dict(id=i + 1, file_name=name, width=64, height=48)
            for i, name in enumerate(names)
        ],
        annotations=annotations,
        categories=[dict(id=v, name=k) for k, v in cat_ids.items()])
    with open(osp.join(root, 'train.json'), 'w') as f:
        json.dump(data, f)
    return root


@pytest.fixture(scope='module')
def voc_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('voc'))
    voc = osp.join(root, 'VOC')
    ids = [f'{i:03d}' for i in range(len(IMAGES))]
    write_images(osp.join(voc, 'JPEGImages'), [f'{i}.jpg' for i in ids])
    os.makedirs(osp.join(voc, 'Annotations'))
    os.makedirs(osp.join(voc, 'ImageSets', 'Main'))
    for i, (img_id, boxes) in enumerate(zip(ids, IMAGES)):
        objects = ''
        for k, (name, ignored) in enumerate(boxes):
            x, y, w, h = box(i, k)
            objects += (
                f'<object><name>{name}</name><difficult>{int(ignored)}'
                f'</difficult><bndbox><xmin>{x + 1}</xmin><ymin>{y + 1}'
                f'</ymin><xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox>'
                '</object>')
        with open(osp.join(voc, 'Annotations', f'{img_id}.xml'), 'w') as f:
            f.write('<annotation><size><width>64</width><height>48</height>'
                    f'<depth>3</depth></size>{objects}</annotation>')
    with open(osp.join(voc, 'ImageSets', 'Main', 'train.txt'), 'w') as f:
        f.write('\n'.join(ids) + '\n')
    return root


def dataset_cfg(form, coco_root, voc_root, pipeline=()):
    if form == 'coco':
        return dict(
            type='CocoDataset',
            data_root=coco_root,
            ann_file='train.json',
            data_prefix=dict(img='images/'),
            metainfo=dict(classes=CLASSES),
            pipeline=list(pipeline))
    return dict(
        type='VOCDataset',
        data_root=voc_root,
        ann_file='VOC/ImageSets/Main/train.txt',
        metainfo=dict(classes=CLASSES),
        pipeline=list(pipeline))


def balanced(form, coco_root, voc_root, pipeline=(), threshold=THRESHOLD):
    """Built from a config, as tools/train.py builds it."""
    with DefaultScope.overwrite_default_scope('tood'):
        return DATASETS.build(
            dict(
                type='ClassBalancedDataset',
                oversample_thr=threshold,
                dataset=dataset_cfg(form, coco_root, voc_root, pipeline)))


def image_index(dataset, idx):
    """Position in IMAGES of item ``idx`` of the wrapper."""
    img_id = dataset.get_data_info(idx)['img_id']
    return int(img_id) - 1 if isinstance(img_id, int) else int(img_id)


@pytest.mark.parametrize('form', ['coco', 'voc'])
@pytest.mark.parametrize('threshold', [THRESHOLD, 0.3])
def test_repeat_factors_follow_the_lvis_formula(form, threshold, coco_root,
                                                voc_root):
    dataset = balanced(form, coco_root, voc_root, threshold=threshold)
    assert isinstance(dataset, ClassBalancedDataset)
    inner = dataset.dataset
    assert inner.metainfo['classes'] == CLASSES
    factors = expected_factors(threshold)
    np.testing.assert_allclose(
        dataset._get_repeat_factors(inner, threshold), factors)
    # Each image is repeated ceil(r(image)) times per epoch.
    counts = Counter(image_index(dataset, i) for i in range(len(dataset)))
    assert [counts[i] for i in range(len(IMAGES))] == [
        math.ceil(f) for f in factors
    ]
    if threshold == THRESHOLD:
        # By hand: f = 8/11, 3/11, 2/11; r = 1.17, 1.91, 2.35.
        assert [counts[i] for i in range(len(IMAGES))] == [
            2, 2, 2, 2, 3, 2, 2, 2, 2, 3, 1
        ]
    # The wrapper's labels are those of the image it repeats.
    for i in range(len(dataset)):
        names = {CLASSES[c] for c in dataset.get_cat_ids(i)}
        assert names == {n for n, _ in IMAGES[image_index(dataset, i)]}


def test_distributed_samplers_share_the_repeated_epoch(
        coco_root, voc_root, monkeypatch):
    import mmengine.dataset.sampler as sampler_module
    per_rank = []
    for rank in range(2):
        # Each process builds its own wrapper: the repeats must agree.
        dataset = balanced('coco', coco_root, voc_root)
        monkeypatch.setattr(sampler_module, 'get_dist_info',
                            lambda rank=rank: (rank, 2))
        sampler = DefaultSampler(dataset, shuffle=True, seed=0)
        sampler.set_epoch(3)
        per_rank.append(list(sampler))
    assert len(per_rank[0]) == len(per_rank[1]) == 12  # 23 padded to 24
    together = per_rank[0] + per_rank[1]
    assert set(together) == set(range(23))
    counts = Counter(image_index(dataset, i) for i in together)
    # Every image as often as its repeat factor says (one padded extra).
    expected = [2, 2, 2, 2, 3, 2, 2, 2, 2, 3, 1]
    extra = [counts[i] - expected[i] for i in range(len(IMAGES))]
    assert sorted(extra) == [0] * 10 + [1]


def test_aspect_ratio_batches_over_the_wrapper(coco_root, voc_root):
    dataset = balanced('voc', coco_root, voc_root)
    batches = list(
        AspectRatioBatchSampler(
            DefaultSampler(dataset, shuffle=True, seed=0), batch_size=4))
    assert sorted(i for batch in batches for i in batch) == list(range(23))


@pytest.mark.parametrize('form', ['coco', 'voc'])
def test_mosaic_draws_its_extra_images_by_repeat_factor(
        form, coco_root, voc_root):
    # The cached mosaic's extra images come from the images the sampler
    # gave this process: over an epoch each enters the cache as often as
    # the wrapper repeats it.
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='CachedMosaic', img_scale=(24, 32), max_cached_images=8),
        dict(type='PackDetInputs')
    ]
    dataset = balanced(form, coco_root, voc_root, pipeline)
    mosaic = dataset.dataset.pipeline.transforms[2]
    pushed = []
    push = mosaic.cache.push
    mosaic.cache.push = lambda results: (pushed.append(results['img_id']),
                                         push(results))
    np.random.seed(0)
    for i in DefaultSampler(dataset, shuffle=True, seed=0):
        item = dataset[i]
        assert tuple(item['inputs'].shape) == (3, 48, 64)
        boxes = item['data_samples'].gt_instances.bboxes
        assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) &
                (boxes[:, 0] >= 0) & (boxes[:, 2] <= 64) &
                (boxes[:, 1] >= 0) & (boxes[:, 3] <= 48)).all()
    counts = Counter(
        int(img_id) - 1 if isinstance(img_id, int) else int(img_id)
        for img_id in pushed)
    assert [counts[i] for i in range(len(IMAGES))] == [
        2, 2, 2, 2, 3, 2, 2, 2, 2, 3, 1
    ]
