"""The shapes data is drawn by a data_preparer, not by the datasets: a
config derived from the main job and pointed at other data (COCO or VOC)
never meets the generator and needs no _delete_=True. ShapesPreparer
draws the set once, also when several processes ask at once."""
import json
import os.path as osp
import threading
import time

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

import tood.datasets  # noqa: F401  (registers everything)
from tood.datasets import CocoDataset, ShapesPreparer, VOCDataset
from tood.datasets.preparers import (build_preparers, dataset_config_paths,
                                     prepare_data, stage_paths)
from tood.datasets.shapes import SHAPES_CLASSES
from tood.datasets.shapes import preparer as shapes_preparer
from tood.engine import missing_dataset_files
from tood.registry import DATASETS, METRICS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MAIN_JOB = osp.join(REPO, 'configs', 'tood', 'tood_r18_fpn_11e_shapes.py')
SMALL = dict(num_train=3, num_val=2, img_size=48, seed=0)


@pytest.fixture
def no_drawing(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError('the shapes generator was called')

    monkeypatch.setattr(shapes_preparer, 'generate_shapes', fail)


def main_job_at(root):
    """The main job with its data (and preparer) under ``root``."""
    cfg = Config.fromfile(MAIN_JOB)
    cfg.merge_from_dict({
        'data_preparer.data_root': root,
        **{f'data_preparer.{k}': v
           for k, v in SMALL.items()},
        'train_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.data_root': root,
        'test_dataloader.dataset.data_root': root,
        'val_evaluator.ann_file': root + 'annotations/instances_val.json',
    })
    return cfg


def test_main_job_reads_plain_coco_datasets():
    cfg = Config.fromfile(MAIN_JOB)
    for stage in ('train', 'val', 'test'):
        dataset = cfg[f'{stage}_dataloader'].dataset
        assert dataset.type == 'CocoDataset'
        assert not {'num_train', 'num_val', 'img_size', 'seed'} & set(dataset)
    assert cfg.data_preparer == dict(
        type='ShapesPreparer', data_root='data/shapes/', num_train=2000,
        num_val=200, img_size=256, seed=0)


def test_missing_shapes_are_drawn_before_the_tools_look(tmp_path):
    root = str(tmp_path / 'data' / 'shapes') + '/'
    cfg = main_job_at(root)
    assert missing_dataset_files(cfg, ['train', 'val']) == []
    with open(osp.join(root, 'annotations', 'instances_train.json')) as f:
        assert json.load(f)['info']['num_train'] == 3
    with DefaultScope.overwrite_default_scope('tood'):
        train = DATASETS.build(cfg.train_dataloader.dataset)
    assert isinstance(train, CocoDataset) and len(train) <= 3
    assert train.metainfo['classes'] == SHAPES_CLASSES


def test_an_existing_set_is_not_drawn_again_and_differences_warn(
        tmp_path, monkeypatch, log_records):
    root = str(tmp_path / 'shapes') + '/'
    preparer = ShapesPreparer(root, **SMALL)
    assert preparer() is True

    def fail(*args, **kwargs):
        raise AssertionError('drawn twice')

    monkeypatch.setattr(shapes_preparer, 'generate_shapes', fail)
    assert preparer() is False
    log_records.clear()
    ShapesPreparer(root, **dict(SMALL, num_train=5))()
    assert any("{'num_train': 3}" in r.getMessage() for r in log_records)


def test_the_set_is_drawn_aside_then_renamed_into_place(tmp_path):
    root = tmp_path / 'data' / 'shapes'
    assert ShapesPreparer(str(root) + '/', **SMALL)() is True
    assert sorted(p.name for p in (root / 'val').iterdir()) == [
        '000000.png', '000001.png'
    ]
    # No temporary folder is left next to the set.
    assert sorted(p.name for p in root.parent.iterdir()) == [
        '.shapes.lock', 'shapes'
    ]


def test_concurrent_preparers_draw_once(tmp_path, monkeypatch):
    calls = []
    real = shapes_preparer.generate_shapes

    def slow_generate(root, **kwargs):
        calls.append(root)
        time.sleep(0.3)  # let the other caller arrive meanwhile
        real(root, **kwargs)

    monkeypatch.setattr(shapes_preparer, 'generate_shapes', slow_generate)
    root = tmp_path / 'shapes'
    errors = []

    def prepare():
        try:
            ShapesPreparer(str(root), **SMALL)()
            # Whoever returns finds the complete set.
            assert (root / 'annotations/instances_val.json').is_file()
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=prepare) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(calls) == 1
    assert sorted(p.name for p in (root / 'train').iterdir()) == [
        '000000.png', '000001.png', '000002.png'
    ]


def test_the_preparer_refuses_a_foreign_folder(tmp_path, no_drawing):
    root = tmp_path / 'shapes'
    root.mkdir()
    (root / 'something.txt').write_text('not a dataset')
    with pytest.raises(FileExistsError, match='not a complete shapes'):
        ShapesPreparer(str(root), **SMALL)()
    assert [p.name for p in root.iterdir()] == ['something.txt']


def test_the_preparer_runs_only_for_the_data_it_makes(tmp_path, no_drawing):
    cfg = main_job_at(str(tmp_path / 'shapes') + '/')
    other = str(tmp_path / 'coco') + '/'
    cfg.merge_from_dict({
        'train_dataloader.dataset.data_root': other,
        'val_dataloader.dataset.data_root': other,
        'val_evaluator.ann_file': other + 'annotations/instances_val.json'
    })
    # Nothing under the preparer's root is read: it does not run, and the
    # user's files are reported missing as usual.
    assert prepare_data(cfg, ['train', 'val']) == []
    assert missing_dataset_files(cfg, ['train']) == [
        other + 'annotations/instances_train.json', other + 'train/'
    ]
    assert stage_paths(cfg, ['val'])[0] == (
        other + 'annotations/instances_val.json')
    assert [type(p) for p in build_preparers(cfg)] == [ShapesPreparer]


def write_coco(root, names):
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(3):
        name = f'{i}.jpg'
        cv2.imwrite(osp.join(root, 'images', name),
                    rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
        images.append(dict(id=i + 1, file_name=name, width=60, height=40))
        annotations.append(
            dict(id=i + 1, image_id=i + 1, category_id=i % 2 + 1,
                 bbox=[5, 5, 20, 15], area=300, iscrowd=0))
    categories = [dict(id=i + 1, name=n) for i, n in enumerate(names)]
    for split in ('train', 'val'):
        with open(osp.join(root, 'annotations', f'{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=categories), f)


DERIVED_COCO = '''
_base_ = {main!r}
data_root = {root!r}
metainfo = dict(classes=('red', 'green'))
train_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='annotations/train.json',
    data_prefix=dict(img='images/'), metainfo=metainfo))
val_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='annotations/val.json',
    data_prefix=dict(img='images/'), metainfo=metainfo))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator
model = dict(bbox_head=dict(num_classes=2))
'''

DERIVED_VOC = '''
_base_ = {main!r}
data_root = {root!r}
metainfo = dict(classes=('red', 'green'))
train_dataloader = dict(dataset=dict(
    type='VOCDataset', data_root=data_root,
    ann_file='ImageSets/Main/train.txt', metainfo=metainfo))
val_dataloader = dict(dataset=dict(
    type='VOCDataset', data_root=data_root,
    ann_file='ImageSets/Main/val.txt', metainfo=metainfo))
test_dataloader = val_dataloader
val_evaluator = [dict(type='VOCMetric'), dict(type='CocoMetric')]
test_evaluator = val_evaluator
model = dict(bbox_head=dict(num_classes=2))
'''


def write_voc(root):
    import os
    for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    for i, name in enumerate(('red', 'green')):
        cv2.imwrite(osp.join(root, 'JPEGImages', f'{i}.jpg'),
                    np.zeros((40, 60, 3), np.uint8))
        with open(osp.join(root, 'Annotations', f'{i}.xml'), 'w') as f:
            f.write(f'<annotation><object><name>{name}</name><bndbox>'
                    '<xmin>5</xmin><ymin>5</ymin><xmax>25</xmax><ymax>20'
                    '</ymax></bndbox></object></annotation>')
    for split in ('train', 'val'):
        with open(osp.join(root, 'ImageSets', 'Main', f'{split}.txt'),
                  'w') as f:
            f.write('0\n1\n')


@pytest.mark.parametrize('fmt', ['coco', 'voc'])
def test_a_derived_config_on_other_data_just_works(tmp_path, no_drawing,
                                                   fmt):
    root = str(tmp_path / 'mydata') + '/'
    if fmt == 'coco':
        (tmp_path / 'mydata' / 'images').mkdir(parents=True)
        (tmp_path / 'mydata' / 'annotations').mkdir()
        write_coco(root, ('red', 'green'))
        text = DERIVED_COCO
    else:
        write_voc(root)
        text = DERIVED_VOC
    config = tmp_path / 'derived.py'
    config.write_text(text.format(main=MAIN_JOB, root=root))
    cfg = Config.fromfile(str(config))
    # No generator argument is left in the datasets; the tools find every
    # file and the shapes preparer is not run.
    assert missing_dataset_files(cfg, ['train', 'val', 'test']) == []
    with DefaultScope.overwrite_default_scope('tood'):
        for stage in ('train', 'val', 'test'):
            dataset = DATASETS.build(cfg[f'{stage}_dataloader'].dataset)
            assert isinstance(dataset,
                              VOCDataset if fmt == 'voc' else CocoDataset)
            assert dataset.metainfo['classes'] == ('red', 'green')
            assert len(dataset) in (2, 3)
        evaluators = cfg.val_evaluator
        for spec in (evaluators
                     if isinstance(evaluators, list) else [evaluators]):
            METRICS.build(spec)


def test_config_paths_name_what_the_tools_check(tmp_path):
    cfg = dict(
        type='VOCDataset',
        data_root='data/VOCdevkit/',
        ann_file=['VOC2007/ImageSets/Main/trainval.txt',
                  'VOC2012/ImageSets/Main/trainval.txt'],
        # Inherited from a COCO config: not read by VOCDataset.
        data_prefix=dict(img='train/'))
    assert dataset_config_paths(cfg) == [
        'data/VOCdevkit/VOC2007/ImageSets/Main/trainval.txt',
        'data/VOCdevkit/VOC2012/ImageSets/Main/trainval.txt'
    ]
    cfg['data_prefix'] = dict(img='train/', sub_data_root='VOC2007/')
    assert dataset_config_paths(cfg)[-1] == 'data/VOCdevkit/VOC2007/'
    wrapped = dict(type='ConcatDataset', datasets=[cfg, dict(
        type='CocoDataset', data_root='d/', ann_file='a.json',
        data_prefix=dict(img='i/'))])
    assert dataset_config_paths(wrapped)[-2:] == ['d/a.json', 'd/i/']
