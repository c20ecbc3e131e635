"""VOCDataset on hand-made VOC folders and on the real BCCD photographs."""
import logging
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.registry import DefaultScope
from shared_data import shared_path

import tood.datasets  # noqa: F401  (registers everything)
from tood.datasets import VOCDataset
from tood.datasets.voc import voc_box
from tood.errors import AnnotationError
from tood.registry import DATASETS

BCCD = shared_path('bccd')
CLASSES = ('cat', 'dog', 'bird')


def warnings_in(records):
    return [r.getMessage() for r in records if r.levelno >= logging.WARNING]


def xml_text(objects, size=(64, 48), filename='x.jpg'):
    """A VOC annotation; objects are (name, [xmin, ymin, xmax, ymax],
    difficult)."""
    parts = [f'<annotation><filename>{filename}</filename>']
    if size is not None:
        parts.append(f'<size><width>{size[0]}</width><height>{size[1]}'
                     '</height><depth>3</depth></size>')
    for name, box, difficult in objects:
        corners = ''.join(f'<{k}>{v}</{k}>'
                          for k, v in zip(('xmin', 'ymin', 'xmax', 'ymax'),
                                          box))
        parts.append(f'<object><name>{name}</name><difficult>{difficult}'
                     f'</difficult><bndbox>{corners}</bndbox></object>')
    parts.append('</annotation>')
    return ''.join(parts)


def write_voc(root, images, split='train'):
    """A VOC folder: images maps id -> (objects, (w, h) or None for an
    image that is not written, xml size or 'same')."""
    for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    rng = np.random.default_rng(0)
    for img_id, (objects, img_size, xml_size) in images.items():
        if img_size is not None:
            w, h = img_size
            cv2.imwrite(
                osp.join(root, 'JPEGImages', f'{img_id}.jpg'),
                rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        size = img_size if xml_size == 'same' else xml_size
        with open(osp.join(root, 'Annotations', f'{img_id}.xml'), 'w') as f:
            f.write(xml_text(objects, size, f'{img_id}.jpg'))
    with open(osp.join(root, 'ImageSets', 'Main', f'{split}.txt'), 'w') as f:
        f.write('\n'.join(images) + '\n')


@pytest.fixture
def voc_root(tmp_path):
    root = str(tmp_path / 'VOC2007')
    write_voc(
        root, {
            '000001': ([('cat', [1, 1, 20, 10], 0), ('dog', [5, 6, 64, 48], 1),
                        ('bird', [30, 20, 40, 30], 0)], (64, 48), 'same'),
            '000002': ([('dog', [10, 10, 10, 20], 0),
                        ('dog', [0, 0, 30, 30], 0),
                        ('cat', [60, 40, 70, 50], 0)], (64, 48), None),
            '000003': ([('horse', [2, 2, 9, 9], 0)], (32, 32), 'same'),
        })
    return root


def build(root, **kwargs):
    kwargs.setdefault('metainfo', dict(classes=CLASSES))
    kwargs.setdefault('pipeline', [])
    return VOCDataset(
        data_root=osp.dirname(root),
        ann_file=f'{osp.basename(root)}/ImageSets/Main/train.txt',
        **kwargs)


def records(dataset):
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def test_boxes_are_mmdetection_s_corners_minus_one(voc_root):
    dataset = build(voc_root, test_mode=True)
    first, second, third = records(dataset)
    assert first['img_id'] == '000001'
    assert first['img_path'] == osp.join(voc_root, 'JPEGImages', '000001.jpg')
    assert (first['width'], first['height']) == (64, 48)
    # xmin-1, ymin-1, xmax-1, ymax-1; labels in metainfo order; the
    # difficult dog is an ignored box.
    assert first['instances'] == [
        dict(bbox=[0.0, 0.0, 19.0, 9.0], bbox_label=0, ignore_flag=0),
        dict(bbox=[4.0, 5.0, 63.0, 47.0], bbox_label=1, ignore_flag=1),
        dict(bbox=[29.0, 19.0, 39.0, 29.0], bbox_label=2, ignore_flag=0),
    ]
    # No <size>: the image's. The zero-width dog is dropped, the box from
    # pixel 0 is clipped to 1 (0-based 0), the cat past the corner to
    # (64, 48) (0-based 63, 47).
    assert (second['width'], second['height']) == (64, 48)
    assert second['instances'] == [
        dict(bbox=[0.0, 0.0, 29.0, 29.0], bbox_label=1, ignore_flag=0),
        dict(bbox=[59.0, 39.0, 63.0, 47.0], bbox_label=0, ignore_flag=0),
    ]
    # Only an unknown class: no instance.
    assert third['instances'] == []


def test_voc_box_rules():
    assert voc_box([1, 1, 10, 10], 20, 20) == ([0.0, 0.0, 9.0, 9.0], '')
    # Fractional corners are truncated as int(float(text)).
    assert voc_box([1.9, 2.5, 10.7, 10.2], 20, 20) == ([0.0, 1.0, 9.0, 9.0],
                                                      '')
    assert voc_box([5, 5, 5, 9], 20, 20) == (
        None, 'zero or negative width or height')
    assert voc_box([30, 30, 40, 40], 20, 20)[0] is None
    assert voc_box([15, 15, 40, 40], 20, 20) == ([14.0, 14.0, 19.0, 19.0],
                                                 'clipped')


def test_fixes_and_unknown_classes_are_reported_once(voc_root, log_records):
    build(voc_root)
    messages = warnings_in(log_records)
    fixed = [m for m in messages if 'fixed' in m]
    assert len(fixed) == 1
    assert ('000002.xml#1: dropped: zero or negative width or height'
            in fixed[0])
    assert 'objects 000002.xml#2, 000002.xml#3: clipped' in fixed[0]
    unknown = [m for m in messages if 'not among' in m]
    assert len(unknown) == 1 and "'horse' (1 in 000003.xml)" in unknown[0]


def test_difficult_objects_train_only_when_asked(voc_root):
    train = build(voc_root)
    assert records(train)[0]['instances'][1]['ignore_flag'] == 1
    with_difficult = build(voc_root, use_difficult=True)
    assert records(with_difficult)[0]['instances'][1]['ignore_flag'] == 0
    # Evaluation ignores them whatever use_difficult says.
    test = build(voc_root, use_difficult=True, test_mode=True)
    assert records(test)[0]['instances'][1]['ignore_flag'] == 1


def test_classes_select_and_order_labels(voc_root):
    dataset = build(voc_root, metainfo=dict(classes=('dog', 'cat')),
                    test_mode=True)
    first = records(dataset)[0]['instances']
    assert [(i['bbox_label'], i['ignore_flag']) for i in first] == [(1, 0),
                                                                    (0, 1)]
    assert dataset.metainfo['classes'] == ('dog', 'cat')
    assert len(dataset.metainfo['palette']) >= 2


def test_filter_cfg(voc_root):
    kept = build(voc_root, filter_cfg=dict(filter_empty_gt=True))
    assert [r['img_id'] for r in records(kept)] == ['000001', '000002']
    small = build(voc_root, filter_cfg=dict(min_size=40))
    assert [r['img_id'] for r in records(small)] == ['000001', '000002']
    # MMDetection's bbox_min_size: small boxes become ignored (not in
    # test_mode).
    boxes = build(voc_root, filter_cfg=dict(bbox_min_size=12))
    assert [i['ignore_flag'] for i in records(boxes)[0]['instances']] == [
        1, 1, 1
    ]
    assert [i['ignore_flag'] for i in records(boxes)[1]['instances']] == [
        0, 1
    ]


def test_every_problem_is_reported_at_once(tmp_path):
    root = str(tmp_path / 'VOC')
    write_voc(
        root, {
            'ok': ([('cat', [1, 1, 5, 5], 0)], (16, 16), 'same'),
            'no_image': ([('cat', [1, 1, 5, 5], 0)], None, (16, 16)),
            'wrong_size': ([('cat', [1, 1, 5, 5], 0)], (16, 12), (20, 12)),
            'swapped': ([('cat', [1, 1, 5, 5], 0)], (16, 12), (12, 16)),
            'bad_box': ([('cat', ['a', 1, 5, 5], 0)], (16, 16), 'same'),
            'broken': ([], (16, 16), 'same'),
        })
    with open(osp.join(root, 'Annotations', 'broken.xml'), 'w') as f:
        f.write('<annotation><object>')
    with open(osp.join(root, 'ImageSets', 'Main', 'train.txt'), 'a') as f:
        f.write('no_xml\nok\n')
    with pytest.raises(AnnotationError) as info:
        build(root)
    message = str(info.value)
    assert 'train.txt cannot be used; 7 problem(s)' in message
    assert "image id 'ok'" in message.replace('image id ok', "image id 'ok'")
    assert 'listed 2 times' in message
    assert 'image no_image.jpg: no such file' in message
    assert "annotation file wrong_size.xml: <size> says 20x12" in message
    assert 'but the image is 16x12' in message
    assert 'width and height swapped' in message
    assert 'object bad_box.xml#1: <bndbox> lacks' in message
    assert 'annotation file broken.xml: not valid XML' in message
    assert 'annotation file no_xml.xml: no such file' in message


def test_missing_split_file_and_unusable_classes(voc_root, tmp_path):
    with pytest.raises(AnnotationError, match='split file .*val.txt does '
                       'not exist'):
        VOCDataset(data_root=osp.dirname(voc_root),
                   ann_file='VOC2007/ImageSets/Main/val.txt',
                   metainfo=dict(classes=CLASSES))
    # VOC's 20 classes by default: none matches, which names the fix.
    cells = str(tmp_path / 'cells')
    write_voc(cells, {'a': ([('RBC', [1, 1, 5, 5], 0),
                             ('WBC', [2, 2, 9, 9], 0)], (16, 16), 'same')})
    with pytest.raises(AnnotationError, match=r"annotated names 'RBC', "
                       r"'WBC': no object .*set metainfo=dict\(classes="):
        VOCDataset(data_root=cells, ann_file='ImageSets/Main/train.txt')


def test_several_splits_concatenate_each_from_its_root(voc_root, tmp_path):
    other = str(tmp_path / 'VOC2012')
    write_voc(other, {'2012_01': ([('bird', [2, 2, 8, 8], 0)], (16, 16),
                                  'same')}, split='trainval')
    dataset = VOCDataset(
        data_root=str(tmp_path),
        ann_file=['VOC2007/ImageSets/Main/train.txt',
                  'VOC2012/ImageSets/Main/trainval.txt'],
        metainfo=dict(classes=CLASSES),
        test_mode=True)
    assert [r['img_id'] for r in records(dataset)] == [
        '000001', '000002', '000003', '2012_01'
    ]
    assert records(dataset)[3]['img_path'] == osp.join(
        other, 'JPEGImages', '2012_01.jpg')
    # MMDetection's way: a ConcatDataset of one VOCDataset per year, each
    # with its sub_data_root.
    with DefaultScope.overwrite_default_scope('tood'):
        concat = DATASETS.build(
            dict(
                type='ConcatDataset',
                datasets=[
                    dict(type='VOCDataset', data_root=str(tmp_path),
                         ann_file=f'{year}/ImageSets/Main/{split}.txt',
                         data_prefix=dict(sub_data_root=f'{year}/'),
                         metainfo=dict(classes=CLASSES), test_mode=True)
                    for year, split in (('VOC2007', 'train'),
                                        ('VOC2012', 'trainval'))
                ]))
    assert len(concat) == 4
    assert concat.get_data_info(3)['img_id'] == '2012_01'


def test_pipeline_loads_the_image_and_its_boxes(voc_root):
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs')
    ]
    with DefaultScope.overwrite_default_scope('tood'):
        dataset = build(voc_root, pipeline=pipeline, test_mode=True)
        sample = dataset[0]
    assert tuple(sample['inputs'].shape) == (3, 48, 64)
    gt = sample['data_samples'].gt_instances
    assert gt.bboxes.tolist() == [[0, 0, 19, 9], [29, 19, 39, 29]]
    assert sample['data_samples'].ignored_instances.labels.tolist() == [1]


@pytest.mark.shared_data('bccd')
def test_bccd_photographs(log_records):
    classes = ('RBC', 'WBC', 'Platelets')
    dataset = VOCDataset(
        data_root=BCCD,
        ann_file=['BCCD/ImageSets/Main/trainval.txt',
                  'BCCD/ImageSets/Main/test.txt'],
        metainfo=dict(classes=classes),
        test_mode=True)
    assert len(dataset) == 364
    labels = [
        inst['bbox_label'] for r in records(dataset)
        for inst in r['instances']
    ]
    # 4,888 boxes in the XML files; the two of zero size are dropped and
    # named in one warning.
    assert len(labels) == 4888 - 2
    assert np.bincount(labels).sum() + 2 == 4888
    warnings = warnings_in(log_records)
    assert len(warnings) == 1
    assert ('objects BloodImage_00338.xml#13, BloodImage_00343.xml#4: '
            'dropped: zero or negative width or height') in warnings[0]
    assert all((r['width'], r['height']) == (640, 480)
               for r in records(dataset))
    # The splits: 292 trainval and 72 test images.
    test = VOCDataset(data_root=BCCD, ann_file='BCCD/ImageSets/Main/test.txt',
                      metainfo=dict(classes=classes), test_mode=True)
    assert len(test) == 72


def test_a_difficult_that_is_not_a_whole_number_is_named(tmp_path):
    root = str(tmp_path / 'VOC')
    write_voc(root, {
        'a': ([('cat', [1, 1, 5, 5], 'inf')], (16, 16), 'same'),
        'b': ([('cat', [1, 1, 5, 5], 'nan')], (16, 16), 'same'),
        'c': ([('cat', [1, 1, 5, 5], '1.0')], (16, 16), 'same'),
    })
    with pytest.raises(AnnotationError) as info:
        build(root)
    message = str(info.value)
    assert '2 problem(s)' in message
    assert ('objects a.xml#1, b.xml#1: <difficult> is not a finite number '
            '(0 or 1)') in message


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` (its pixel data is not
    there: only the header is read when a dataset loads)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data)))

    return (b'\x89PNG\r\n\x1a\n' +
            chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0,
                                       0, 0)) +
            chunk(b'IDAT', zlib.compress(b'\x00' * 64)) +
            chunk(b'IEND', b''))


def test_images_over_pillows_pixel_limit_are_read_by_size(tmp_path,
                                                          monkeypatch):
    # 20000 x 10000: twice Pillow's default limit, as aerial and pathology
    # images are; under OpenCV's, which decodes them.
    root = tmp_path / 'VOC'
    write_voc(str(root), {'big': ([('cat', [1, 1, 50, 50], 0)], None,
                                  (20000, 10000))})
    (root / 'JPEGImages' / 'big.png').write_bytes(png_header(20000, 10000))
    dataset = build(str(root), img_suffix='.png')
    assert (records(dataset)[0]['width'],
            records(dataset)[0]['height']) == (20000, 10000)
    # Over OpenCV's limit too: refused by name, with the limit to raise.
    monkeypatch.setenv('OPENCV_IO_MAX_IMAGE_PIXELS', str(10**8))
    with pytest.raises(AnnotationError) as info:
        build(str(root), img_suffix='.png')
    message = str(info.value)
    assert 'image big.png: 20000x10000 = 200,000,000 pixels' in message
    assert 'OPENCV_IO_MAX_IMAGE_PIXELS' in message and '100,000,000' in message


def test_an_id_that_leaves_the_voc_folder_is_named_with_its_path(tmp_path):
    root = tmp_path / 'VOC'
    write_voc(str(root), {'ok': ([('cat', [1, 1, 5, 5], 0)], (16, 16),
                                 'same')})
    # An annotation and an image outside the VOC folder, which an id with
    # '..' reaches.
    (tmp_path / 'outside.xml').write_text(
        xml_text([('cat', [1, 1, 5, 5], 0)], (16, 16)))
    cv2.imwrite(str(tmp_path / 'outside.jpg'), np.zeros((16, 16, 3),
                                                        np.uint8))
    with open(root / 'ImageSets' / 'Main' / 'train.txt', 'a') as f:
        f.write('../../outside\n')
    with pytest.raises(AnnotationError) as info:
        build(str(root))
    message = str(info.value)
    assert "image id ../../outside: leads outside the VOC folder" in message
    assert str(tmp_path / 'outside.xml') in message
