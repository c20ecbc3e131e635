"""The shapes drawer: one image (tood.datasets.shapes.drawing) and the set
on disk (tood.datasets.shapes.writing); its entry point, ShapesPreparer,
is tested in test_preparers.py."""
import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.registry import DefaultScope

from tood.datasets import CocoDataset
from tood.datasets.shapes import (SHAPES_CLASSES, generate_shapes, image_rng,
                                  render_image)
from tood.datasets.shapes.drawing import MIN_VISIBLE
from tood.registry import DATASETS

SMALL = dict(num_train=8, num_val=4, img_size=96)


def tree_bytes(root: Path) -> dict:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob('*')) if p.is_file()
    }


@pytest.fixture(scope='module')
def small_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('shapes') / 'a'
    generate_shapes(str(root), seed=0, processes=1, **SMALL)
    return root


def tight_box(mask: np.ndarray) -> list:
    ys, xs = np.nonzero(mask)
    return [
        int(xs.min()),
        int(ys.min()),
        int(xs.max() - xs.min() + 1),
        int(ys.max() - ys.min() + 1)
    ]


def test_the_drawing_of_a_seed_does_not_change():
    # The main job's data and results depend on these exact pixels and
    # boxes (256 px, seed 0, as its config draws them). The digest was
    # taken from the drawer before it was split into modules; a change of
    # the drawing code, or of OpenCV's or NumPy's rasterising and random
    # streams, shows here first.
    digest = hashlib.md5()
    for split in ('train', 'val'):
        for index in range(4):
            sample = render_image(image_rng(0, split, index), 256, 256)
            for array in (sample.image, sample.labels, sample.bboxes,
                          sample.areas):
                digest.update(array.tobytes())
    assert digest.hexdigest() == '438f6944f32d45f44b1f24083434eb27'


def test_generation_is_deterministic(small_set, tmp_path):
    again = tmp_path / 'b'
    # Drawn in two worker processes: the same bytes as in one.
    generate_shapes(str(again), seed=0, processes=2, **SMALL)
    first, second = tree_bytes(small_set), tree_bytes(again)
    assert len(first) == 8 + 4 + 2
    assert first == second

    other = tmp_path / 'c'
    generate_shapes(str(other), seed=1, **SMALL)
    third = tree_bytes(other)
    assert third.keys() == first.keys()
    differing = [k for k in first if first[k] != third[k]]
    # Every image and both jsons change with the seed.
    assert len(differing) == len(first)


def test_val_split_does_not_depend_on_num_train(small_set, tmp_path):
    root = tmp_path / 'fewer'
    generate_shapes(
        str(root), num_train=2, num_val=4, img_size=96, seed=0)
    for i in range(4):
        name = f'val/{i:06d}.png'
        assert (root / name).read_bytes() == (small_set / name).read_bytes()
    val = json.loads((root / 'annotations/instances_val.json').read_text())
    ref = json.loads(
        (small_set / 'annotations/instances_val.json').read_text())
    assert val['annotations'] == ref['annotations']
    # ... and differs from the train image of the same index.
    assert (small_set / 'val/000000.png').read_bytes() != (
        small_set / 'train/000000.png').read_bytes()


def test_pycocotools_loads_both_splits(small_set):
    from pycocotools.coco import COCO
    for split, num in (('train', 8), ('val', 4)):
        coco = COCO(str(small_set / f'annotations/instances_{split}.json'))
        assert sorted(coco.getImgIds()) == list(range(1, num + 1))
        cats = coco.loadCats(coco.getCatIds())
        assert [c['id'] for c in cats] == list(range(1, 9))
        assert tuple(c['name'] for c in cats) == SHAPES_CLASSES
        ann_ids = coco.getAnnIds()
        assert sorted(ann_ids) == list(range(1, len(ann_ids) + 1))
        assert len(ann_ids) > num  # a few objects per image on average
        for img in coco.loadImgs(coco.getImgIds()):
            pixels = cv2.imread(str(small_set / split / img['file_name']))
            assert pixels.shape == (img['height'], img['width'], 3) == (96,
                                                                        96, 3)
        for ann in coco.loadAnns(ann_ids):
            assert ann['iscrowd'] == 0
            assert 1 <= ann['category_id'] <= 8
            x, y, w, h = ann['bbox']
            assert x >= 0 and y >= 0 and w >= 1 and h >= 1
            assert x + w <= 96 and y + h <= 96
            assert 0 < ann['area'] <= w * h


@pytest.mark.parametrize('split', ['train', 'val'])
def test_json_boxes_are_tight_boxes_of_visible_pixels(small_set, split):
    data = json.loads(
        (small_set / f'annotations/instances_{split}.json').read_text())
    num = len(data['images'])
    for index in range(num):
        # The same stream re-renders the same image, now with its masks.
        sample = render_image(
            image_rng(0, split, index), 96, 96, debug=True)
        on_disk = cv2.imread(str(small_set / split / f'{index:06d}.png'))
        np.testing.assert_array_equal(on_disk, sample.image)
        anns = [a for a in data['annotations'] if a['image_id'] == index + 1]
        assert len(anns) == len(sample.labels)
        for k, ann in enumerate(anns):
            visible = sample.owner == k
            assert ann['bbox'] == tight_box(visible)
            assert ann['area'] == int(visible.sum())
            assert ann['category_id'] == sample.labels[k] + 1


def test_drawn_pixels_are_exactly_the_annotated_objects():
    num_objects = 0
    for index in range(12):
        sample = render_image(
            image_rng(7, 'train', index), 128, 128, debug=True)
        objects = sample.owner >= 0
        changed = (sample.clean != sample.background).any(-1)
        # Nothing is drawn outside the objects' visible masks ...
        assert not (changed & ~objects).any()
        for k in range(len(sample.labels)):
            mine = sample.owner == k
            num_objects += 1
            # ... and each object stands out from what is below it.
            assert changed[mine].mean() > 0.95
            assert sample.areas[k] == mine.sum()
            assert sample.areas[k] >= MIN_VISIBLE * sample.full_areas[k]
            if sample.textures[k] == 'solid':
                colours = np.unique(sample.clean[mine], axis=0)
                assert len(colours) == 1
            np.testing.assert_array_equal(sample.bboxes[k], tight_box(mine))
    assert num_objects > 20


def test_dataset_statistics():
    labels, long_sides, empty = [], [], 0
    num = 200
    for index in range(num):
        sample = render_image(image_rng(3, 'train', index), 128, 128)
        empty += len(sample.labels) == 0
        labels += sample.labels.tolist()
        long_sides += sample.bboxes[:, 2:].max(1).tolist() if len(
            sample.labels) else []
        assert ((sample.bboxes[:, :2] >= 0).all()
                and (sample.bboxes[:, :2] + sample.bboxes[:, 2:] <= 128).all())
    counts = np.bincount(labels, minlength=len(SHAPES_CLASSES))
    assert len(counts) == len(SHAPES_CLASSES)
    assert counts.min() > 0.5 * counts.mean()  # every class, roughly even
    assert 2 <= empty <= 25  # about 5% empty images
    assert min(long_sides) <= 12
    assert max(long_sides) >= 0.6 * 128
    assert 3 <= len(labels) / num <= 6
    # Some objects are partly covered or cut by the border.
    hidden = [
        (s.areas < s.full_areas).any() for s in (render_image(
            image_rng(3, 'train', i), 128, 128) for i in range(20))
    ]
    assert sum(hidden) >= 5


def test_coco_dataset_reads_the_drawn_set(small_set):
    with DefaultScope.overwrite_default_scope('tood'):
        val = DATASETS.build(
            dict(
                type='CocoDataset',
                data_root=str(small_set),
                ann_file='annotations/instances_val.json',
                data_prefix=dict(img='val/'),
                test_mode=True,
                pipeline=[]))
    assert isinstance(val, CocoDataset)
    assert len(val) == 4
    # The file's own categories: no metainfo is needed.
    assert val.metainfo['classes'] == SHAPES_CLASSES
    data = json.loads(
        (small_set / 'annotations/instances_val.json').read_text())
    for i in range(4):
        info = val.get_data_info(i)
        assert info['img_path'] == str(small_set / 'val' / f'{i:06d}.png')
        assert os.path.isfile(info['img_path'])
        anns = [
            a for a in data['annotations'] if a['image_id'] == info['img_id']
        ]
        assert [inst['bbox'] for inst in info['instances']] == [[
            x, y, x + w, y + h
        ] for x, y, w, h in (a['bbox'] for a in anns)]
        assert [inst['bbox_label'] for inst in info['instances']
                ] == [a['category_id'] - 1 for a in anns]
