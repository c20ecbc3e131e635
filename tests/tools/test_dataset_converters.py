"""tools/dataset_converters: VOC and YOLO labels to COCO json, round trips on
the real BCCD and COCO128 files and refusals of bad input."""
import json
import os
import os.path as osp
import runpy
from collections import defaultdict

import cv2
import numpy as np
import pytest
from shared_data import shared_path
from tool_helpers import REPO

import tood.datasets  # noqa: F401  (registers everything)
from tood.datasets import CocoDataset, VOCDataset
from tood.datasets.converters import (read_yolo_names, voc_to_coco,
                                      yolo_to_coco)
from tood.errors import AnnotationError

BCCD = shared_path('bccd')
COCO128 = shared_path('coco128')


def tool_main(name):
    return runpy.run_path(
        osp.join(REPO, 'tools', 'dataset_converters', name))['main']


def boxes_by_image(dataset):
    """{image file name: sorted [(label, ignore, x1, y1, x2, y2)]}"""
    out = {}
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        out[osp.basename(info['img_path'])] = sorted(
            (inst['bbox_label'], inst['ignore_flag'], *inst['bbox'])
            for inst in info['instances'])
    return out


@pytest.mark.shared_data('bccd')
def test_bccd_voc_to_coco_gives_the_same_boxes(tmp_path, capsys, log_records):
    out = tmp_path / 'trainval.json'
    tool_main('voc2coco.py')([
        osp.join(BCCD, 'BCCD', 'ImageSets', 'Main', 'train.txt'),
        osp.join(BCCD, 'BCCD', 'ImageSets', 'Main', 'val.txt'), '--out',
        str(out), '--classes', 'RBC', 'WBC', 'Platelets'
    ])
    warnings = '\n'.join(r.getMessage() for r in log_records)
    assert f'wrote {out}: 292 images' in capsys.readouterr().out
    # The degenerate box of BloodImage_00338 (train) is named and dropped.
    assert 'BloodImage_00338.xml#13: dropped' in warnings
    classes = ('RBC', 'WBC', 'Platelets')
    voc = VOCDataset(
        data_root=BCCD,
        ann_file=['BCCD/ImageSets/Main/train.txt',
                  'BCCD/ImageSets/Main/val.txt'],
        metainfo=dict(classes=classes),
        test_mode=True)
    coco = CocoDataset(
        ann_file=str(out),
        data_prefix=dict(img=osp.join(BCCD, 'BCCD', 'JPEGImages') + '/'),
        metainfo=dict(classes=classes),
        test_mode=True)
    expected = boxes_by_image(voc)
    assert len(expected) == 292
    assert boxes_by_image(coco) == expected
    assert all(osp.isfile(coco.get_data_info(i)['img_path'])
               for i in range(len(coco)))


def test_voc_difficult_becomes_crowd_and_bad_input_is_refused(tmp_path):
    root = tmp_path / 'VOC'
    for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        (root / sub).mkdir(parents=True)
    cv2.imwrite(str(root / 'JPEGImages' / 'a.jpg'),
                np.zeros((20, 30, 3), np.uint8))
    (root / 'Annotations' / 'a.xml').write_text(
        '<annotation><size><width>30</width><height>20</height></size>'
        '<object><name>cat</name><difficult>1</difficult><bndbox><xmin>2'
        '</xmin><ymin>3</ymin><xmax>12</xmax><ymax>15</ymax></bndbox>'
        '</object><object><name>dog</name><bndbox><xmin>1</xmin><ymin>1'
        '</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>')
    split = root / 'ImageSets' / 'Main' / 'train.txt'
    split.write_text('a\n')
    coco = voc_to_coco([str(split)])
    # Classes default to every name found, sorted; ids from 1.
    assert [c['name'] for c in coco['categories']] == ['cat', 'dog']
    assert coco['images'] == [
        dict(id=1, file_name='a.jpg', width=30, height=20, voc_id='a')
    ]
    assert [(a['category_id'], a['bbox'], a['iscrowd'])
            for a in coco['annotations']] == [(1, [1.0, 2.0, 10.0, 12.0], 1),
                                              (2, [0.0, 0.0, 4.0, 4.0], 0)]

    split.write_text('a\nmissing\n')
    main = tool_main('voc2coco.py')
    with pytest.raises(SystemExit) as info:
        main([str(split), '--out', str(tmp_path / 'x.json')])
    assert 'annotation file missing.xml: no such file' in str(info.value)
    assert not (tmp_path / 'x.json').exists()


def export_yolo(coco_json, labels_dir):
    """A YOLO export of a COCO file, as annotation tools write it: one
    line per non-crowd box, centre and size normalised, 6 decimals; class
    indices follow the categories sorted by id. Returns the names."""
    with open(coco_json) as f:
        data = json.load(f)
    categories = sorted(data['categories'], key=lambda c: c['id'])
    index = {c['id']: i for i, c in enumerate(categories)}
    lines = defaultdict(list)
    for ann in data['annotations']:
        if ann.get('iscrowd'):
            continue  # YOLO has no crowd regions
        image = next(i for i in data['images'] if i['id'] == ann['image_id'])
        w, h = image['width'], image['height']
        x, y, bw, bh = ann['bbox']
        lines[image['file_name']].append(
            f'{index[ann["category_id"]]} {(x + bw / 2) / w:.6f} '
            f'{(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}')
    os.makedirs(labels_dir, exist_ok=True)
    for image in data['images']:
        if image['file_name'] in lines:
            stem = osp.splitext(image['file_name'])[0]
            with open(osp.join(labels_dir, stem + '.txt'), 'w') as f:
                f.write('\n'.join(lines[image['file_name']]) + '\n')
    return [c['name'] for c in categories], data


@pytest.mark.shared_data('coco128')
def test_coco128_yolo_export_round_trips_within_rounding(tmp_path, capsys):
    labels = tmp_path / 'labels' / 'train2017'
    names, original = export_yolo(
        osp.join(COCO128, 'annotations', 'instances_train2017.json'),
        str(labels))
    data_yaml = tmp_path / 'coco128.yaml'
    data_yaml.write_text(
        'path: ../datasets/coco128\ntrain: images/train2017\nnames:\n' +
        ''.join(f'  {i}: {n}\n' for i, n in enumerate(names)))
    out = tmp_path / 'train.json'
    tool_main('yolo2coco.py')([
        osp.join(COCO128, 'train2017'), '--labels',
        str(labels), '--names',
        str(data_yaml), '--out',
        str(out)
    ])
    assert f'wrote {out}: 128 images, 929 boxes, 80 classes' in (
        capsys.readouterr().out)
    with open(out) as f:
        converted = json.load(f)

    # Sizes read from the images agree with COCO's.
    sizes = {i['file_name']: (i['width'], i['height'])
             for i in original['images']}
    assert {i['file_name']: (i['width'], i['height'])
            for i in converted['images']} == sizes
    assert len(converted['images']) == 128

    def by_image(data):
        file_of = {i['id']: i['file_name'] for i in data['images']}
        name_of = {c['id']: c['name'] for c in data['categories']}
        out = defaultdict(list)
        for a in data['annotations']:
            if not a.get('iscrowd'):
                out[file_of[a['image_id']]].append(
                    (name_of[a['category_id']], *a['bbox']))
        return {k: sorted(v) for k, v in out.items()}

    want, got = by_image(original), by_image(converted)
    assert sorted(want) == sorted(got)
    assert sum(len(v) for v in got.values()) == 929  # 939 less 10 crowd
    for file_name in want:
        assert ([b[0] for b in got[file_name]] ==
                [b[0] for b in want[file_name]])
        # 6 normalised decimals of a 640-pixel side: within 1e-3 px, plus
        # the converter's rounding to 3 decimals.
        np.testing.assert_allclose(
            np.array([b[1:] for b in got[file_name]]),
            np.array([b[1:] for b in want[file_name]]),
            atol=2e-3)


def test_yolo_names_from_files_and_yamls(tmp_path):
    (tmp_path / 'obj.names').write_text('cat\ndog\n\n')
    assert read_yolo_names(str(tmp_path / 'obj.names')) == ['cat', 'dog']
    (tmp_path / 'a.yaml').write_text('names: [cat, dog]\n')
    assert read_yolo_names(str(tmp_path / 'a.yaml')) == ['cat', 'dog']
    (tmp_path / 'b.yaml').write_text('names:\n  1: dog\n  0: cat\n')
    assert read_yolo_names(str(tmp_path / 'b.yaml')) == ['cat', 'dog']
    (tmp_path / 'c.yaml').write_text('nc: 2\n')
    with pytest.raises(AnnotationError, match='c.yaml has no names list'):
        read_yolo_names(str(tmp_path / 'c.yaml'))
    (tmp_path / 'd.names').write_text('cat\ncat\n')
    with pytest.raises(AnnotationError, match="names .'cat'. appear more"):
        read_yolo_names(str(tmp_path / 'd.names'))
    with pytest.raises(AnnotationError, match='cannot be read'):
        read_yolo_names(str(tmp_path / 'none.names'))


def test_yolo_bad_labels_are_refused_by_file_and_line(tmp_path):
    images = tmp_path / 'images' / 'train'
    labels = tmp_path / 'labels' / 'train'
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for stem in ('a', 'b', 'c'):
        cv2.imwrite(str(images / f'{stem}.jpg'), np.zeros((40, 80, 3),
                                                          np.uint8))
    (images / 'broken.png').write_bytes(b'not a png')
    (labels / 'a.txt').write_text('0 0.5 0.5 0.5 0.5\n1 0.25 0.5 0.1 0.2\n')
    (labels / 'b.txt').write_text('0 0.5 0.5 0.2\n'  # 4 fields
                                  '5 0.5 0.5 0.2 0.2\n'  # class 5 of 2
                                  '0 0.9 0.5 0.4 0.2\n'  # past the border
                                  'x 0.5 0.5 0.2 0.2\n')
    (labels / 'c.txt').write_text('0 0.5 0.5 0 0.2\n')  # zero width
    (labels / 'orphan.txt').write_text('0 0.5 0.5 0.5 0.5\n')
    with pytest.raises(AnnotationError) as info:
        yolo_to_coco(str(images), ['cat', 'dog'])
    message = str(info.value)
    assert '5 problem(s)' in message
    assert 'line b.txt:1: has 4 fields, not 5' in message
    assert 'line b.txt:2: class 5 is not among the 2 names' in message
    assert 'line b.txt:3: box reaches outside [0, 1]' in message
    assert 'line b.txt:4: is not an integer class' in message
    assert 'image broken.png: not an image that can be read' in message

    (labels / 'b.txt').unlink()
    (images / 'broken.png').unlink()
    coco = yolo_to_coco(str(images), ['cat', 'dog'])
    # Labels default to images/ -> labels/; sizes from the images.
    assert [(i['file_name'], i['width'], i['height'])
            for i in coco['images']] == [('a.jpg', 80, 40), ('b.jpg', 80, 40),
                                         ('c.jpg', 80, 40)]
    assert [(a['image_id'], a['category_id'], a['bbox'])
            for a in coco['annotations']] == [
                (1, 1, [20.0, 10.0, 40.0, 20.0]),
                (1, 2, [16.0, 16.0, 8.0, 8.0])
            ]
    # The CLI says so by name, too.
    main = tool_main('yolo2coco.py')
    with pytest.raises(SystemExit, match='names file .*missing.names'):
        main([str(images), '--names', str(tmp_path / 'missing.names'),
              '--out', str(tmp_path / 'out.json')])


# ------------------------------------------------------- the --out file


def small_voc(root) -> str:
    """One 30x20 image with one box; returns the split file."""
    for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        (root / sub).mkdir(parents=True)
    cv2.imwrite(str(root / 'JPEGImages' / 'a.jpg'),
                np.zeros((20, 30, 3), np.uint8))
    (root / 'Annotations' / 'a.xml').write_text(
        '<annotation><object><name>cat</name><bndbox><xmin>2</xmin><ymin>3'
        '</ymin><xmax>12</xmax><ymax>15</ymax></bndbox></object>'
        '</annotation>')
    split = root / 'ImageSets' / 'Main' / 'train.txt'
    split.write_text('a\n')
    return str(split)


def small_yolo(root) -> tuple:
    """images/a.jpg with one box; returns (images folder, names file)."""
    (root / 'images').mkdir(parents=True)
    (root / 'labels').mkdir()
    cv2.imwrite(str(root / 'images' / 'a.jpg'),
                np.zeros((20, 30, 3), np.uint8))
    (root / 'labels' / 'a.txt').write_text('0 0.5 0.5 0.5 0.5\n')
    (root / 'names.txt').write_text('cat\n')
    return str(root / 'images'), str(root / 'names.txt')


def test_an_out_that_is_an_input_is_refused(tmp_path):
    split = small_voc(tmp_path / 'VOC')
    with pytest.raises(SystemExit) as info:
        tool_main('voc2coco.py')([split, '--out', split])
    assert str(info.value.code) == (
        f'{split} would be written over the input {split}: choose another '
        '--out; nothing was written')
    assert open(split).read() == 'a\n'

    images, names = small_yolo(tmp_path / 'yolo')
    with pytest.raises(SystemExit, match=f'{names} would be written over'):
        tool_main('yolo2coco.py')([images, '--names', names, '--out', names])
    assert open(names).read() == 'cat\n'


FILE_SIZE_LIMIT = '''
import resource, runpy, signal, sys
# Writes past 100 bytes fail with EFBIG, as on a full disk.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


@pytest.mark.e2e
def test_a_failed_write_leaves_the_previous_json(tmp_path):
    from tool_helpers import run_tool
    import sys
    split = small_voc(tmp_path / 'VOC')
    images, names = small_yolo(tmp_path / 'yolo')
    out = tmp_path / 'out' / 'train.json'
    out.parent.mkdir()
    for tool, args in (('voc2coco.py', [split]),
                       ('yolo2coco.py', [images, '--names', names])):
        out.write_text('{"previous": 1}')
        proc = run_tool([
            sys.executable, '-c', FILE_SIZE_LIMIT,
            osp.join(REPO, 'tools', 'dataset_converters', tool), *args,
            '--out', str(out)
        ], cwd=str(tmp_path), env=dict(PYTHONDONTWRITEBYTECODE='1'))
        assert proc.returncode == 1, proc.stdout[-3000:]
        assert 'Traceback' not in proc.stdout
        assert f'{out} could not be written' in proc.stdout
        assert 'it was left as it was' in proc.stdout
        assert out.read_text() == '{"previous": 1}'
        assert os.listdir(out.parent) == ['train.json']


# -------------------------------------------- YOLO: one message per case


def yolo_folder(root, stems=('a', ), suffix='.jpg'):
    images, labels = root / 'images', root / 'labels'
    images.mkdir(parents=True)
    labels.mkdir()
    for stem in stems:
        cv2.imwrite(str(images / f'{stem}{suffix}'),
                    np.zeros((40, 80, 3), np.uint8))
    return images, labels


def test_yolo_unreadable_label_files_are_named(tmp_path):
    images, labels = yolo_folder(tmp_path, ('a', 'b', 'c'))
    (labels / 'a.txt').write_bytes('0 0.5 0.5 0.2 0.2 # café\n'.encode(
        'latin-1'))
    (labels / 'b.txt').mkdir()
    (labels / 'c.txt').write_text('0 0.5 0.5 0.2 0.2\n')
    with pytest.raises(AnnotationError) as info:
        yolo_to_coco(str(images), ['cat'])
    message = str(info.value)
    assert '2 problem(s)' in message
    assert 'label file a.txt: not UTF-8 text' in message
    assert 'label file b.txt: a folder, not a label file' in message


def test_yolo_names_yaml_with_mixed_keys_is_named(tmp_path):
    path = tmp_path / 'data.yaml'
    path.write_text("names:\n  0: cat\n  '1': dog\n")
    with pytest.raises(AnnotationError, match='data.yaml: the keys of names '
                       r"must be the indices 0..1, got \[0, '1'\]"):
        read_yolo_names(str(path))


def test_yolo_boxes_with_nothing_left_after_clipping_are_dropped(
        tmp_path, log_records):
    images, labels = yolo_folder(tmp_path)
    # Within the exporters' rounding tolerance of the right border, and
    # nothing of it inside the image.
    (labels / 'a.txt').write_text('0 1.0005 0.5 0.001 0.2\n'
                                  '0 0.5 0.5 0.2 0.2\n')
    coco = yolo_to_coco(str(images), ['cat'])
    assert [a['bbox'] for a in coco['annotations']] == [
        [32.0, 16.0, 16.0, 8.0]
    ]
    warnings = [r.getMessage() for r in log_records if r.levelno >= 30]
    assert any('line a.txt:1: dropped: no width or height left inside the '
               'image' in w for w in warnings)


def test_yolo_images_sharing_a_label_file_are_warned_about(
        tmp_path, log_records):
    images, labels = yolo_folder(tmp_path, ('a', ))
    cv2.imwrite(str(images / 'a.png'), np.zeros((40, 80, 3), np.uint8))
    (labels / 'a.txt').write_text('0 0.5 0.5 0.2 0.2\n')
    coco = yolo_to_coco(str(images), ['cat'])
    assert len(coco['annotations']) == 2
    warnings = [r.getMessage() for r in log_records if r.levelno >= 30]
    assert any('label file a.txt: read for each of a.jpg, a.png' in w
               for w in warnings)
