"""LoadImageFromFile names the file and the problem for unusable images,
turns every usable one into 8-bit BGR, and CocoDataset skips unusable ones
while training only."""
import json
import logging

import cv2
import numpy as np
import pytest
from mmengine.registry import DefaultScope
from PIL import Image
from torch._utils import ExceptionWrapper

import tood.datasets.transforms.image_loading as image_loading
from tood.datasets import CocoDataset
from tood.datasets.transforms import LoadImageFromFile
from tood.errors import ImageLoadError
from tood.engine.errors import explain_error
from tood.registry import TRANSFORMS


def jpeg_bytes(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(
        rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (5, 5), 0)
    return cv2.imencode('.jpg', img)[1].tobytes()


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp('images')
    files = {}

    def put(name, data):
        (root / name).write_bytes(data)
        files[name] = str(root / name)

    jpeg = jpeg_bytes()
    put('good.jpg', jpeg)
    put('empty.jpg', b'')
    put('text.jpg', b'this is not an image at all')
    put('truncated.jpg', jpeg[:len(jpeg) * 2 // 3])
    png = cv2.imencode('.png', np.full((20, 30, 3), 90, np.uint8))[1]
    put('truncated.png', png.tobytes()[:-40])
    put('trailer.jpg', jpeg + b'MAKERNOTE' * 50)  # valid, data after EOI
    put('gray.png', cv2.imencode('.png', np.full((20, 30), 77,
                                                 np.uint8))[1].tobytes())
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 200, 0  # red, fully transparent
    put('rgba.png', cv2.imencode('.png', rgba)[1].tobytes())
    deep = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100)
    put('deep.png', cv2.imencode('.png', deep)[1].tobytes())
    # Stored 40 wide and 20 high with its left quarter red; EXIF
    # orientation 6 says "rotate 90 degrees clockwise to display".
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :10] = (255, 0, 0)  # RGB red
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(
        root / 'exif.jpg', exif=exif.tobytes(), quality=95)
    files['exif.jpg'] = str(root / 'exif.jpg')
    files['missing.jpg'] = str(root / 'missing.jpg')
    return files


def load(path, **results):
    return LoadImageFromFile()(dict(img_path=path, **results))


def test_configs_get_this_loader():
    with DefaultScope.overwrite_default_scope('tood'):
        transform = TRANSFORMS.build(dict(type='LoadImageFromFile'))
    assert type(transform) is LoadImageFromFile


@pytest.mark.parametrize('name, reason', [
    ('missing.jpg', 'no such file'),
    ('empty.jpg', 'the file is empty'),
    ('text.jpg', "not an image that can be decoded (corrupt or not an "
     "image; it starts with b'this is "),
    ('truncated.jpg', 'the image is truncated'),
    ('truncated.png', 'the image is truncated'),
])
def test_unusable_file_is_named_with_the_problem(images, name, reason):
    with pytest.raises(ImageLoadError) as info:
        load(images[name])
    assert str(info.value).startswith(f'{images[name]}: {reason}')


def test_truncated_jpeg_is_caught_when_the_decoder_does_not(
        images, monkeypatch):
    # Older OpenCV versions fill a cut JPEG with grey and succeed.
    monkeypatch.setattr(image_loading.mmcv, 'imfrombytes',
                        lambda *args, **kwargs: np.zeros((48, 64, 3),
                                                         np.uint8))
    with pytest.raises(ImageLoadError, match='truncated'):
        load(images['truncated.jpg'])
    # Data after the end marker (maker notes) is no truncation.
    assert load(images['trailer.jpg'])['img'].shape == (48, 64, 3)


def test_ignore_empty_returns_none(images):
    transform = LoadImageFromFile(ignore_empty=True)
    assert transform(dict(img_path=images['missing.jpg'])) is None


def test_every_usable_image_becomes_8_bit_bgr(images):
    good = load(images['good.jpg'])
    assert good['img'].shape == (48, 64, 3) and good['img_shape'] == (48, 64)
    np.testing.assert_array_equal(good['img'],
                                  cv2.imread(images['good.jpg']))

    gray = load(images['gray.png'])['img']
    assert gray.shape == (20, 30, 3) and (gray == 77).all()

    rgba = load(images['rgba.png'])['img']  # alpha dropped, colour kept
    assert rgba.shape == (20, 30, 3)
    assert rgba[0, 0].tolist() == [0, 0, 200]

    deep = load(images['deep.png'])['img']
    assert deep.shape == (20, 30, 3) and deep.dtype == np.uint8
    source = np.arange(20 * 30).reshape(20, 30) * 100
    np.testing.assert_array_equal(deep[..., 0], source >> 8)

    exif = load(images['exif.jpg'])
    # Rotated as displayed: 20 wide, 40 high, the red quarter on top.
    assert exif['img'].shape == (40, 20, 3) and exif['ori_shape'] == (40, 20)
    assert exif['img'][:8, :, 2].min() > 200  # red (BGR)
    assert exif['img'][12:, :, 2].max() < 60


def test_size_that_disagrees_with_the_annotation_file(images):
    with pytest.raises(ImageLoadError) as info:
        load(images['exif.jpg'], height=20, width=40)  # unrotated size
    message = str(info.value)
    assert message.startswith(images['exif.jpg'])
    assert '20x40 (width x height)' in message and '40x20' in message
    assert 'EXIF orientation' in message
    with pytest.raises(ImageLoadError, match='would not fit'):
        load(images['good.jpg'], height=50, width=64)
    assert load(images['good.jpg'], height=48, width=64)['img'] is not None


def test_worker_traceback_is_cut_from_the_message():
    try:
        raise ImageLoadError('/data/x.jpg: no such file')
    except ImageLoadError:
        wrapped = ExceptionWrapper(where='in DataLoader worker process 0')
    with pytest.raises(ImageLoadError) as info:
        wrapped.reraise()
    assert 'Original Traceback' in str(info.value)
    assert explain_error(info.value) == '/data/x.jpg: no such file'


@pytest.fixture
def dataset_files(images, tmp_path):
    names = ['good.jpg', 'missing.jpg', 'text.jpg']
    data = dict(
        images=[
            dict(id=i + 1, file_name=n, width=64, height=48)
            for i, n in enumerate(names)
        ],
        annotations=[
            dict(id=i + 1, image_id=i + 1, category_id=1,
                 bbox=[5, 5, 20, 20], area=400, iscrowd=0)
            for i in range(len(names))
        ],
        categories=[dict(id=1, name='thing')])
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(data))
    return str(path), images['good.jpg'].rsplit('/', 1)[0] + '/'


def build(ann_file, img_dir, test_mode):
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs'),
    ]
    with DefaultScope.overwrite_default_scope('tood'):
        return CocoDataset(
            ann_file=ann_file,
            data_prefix=dict(img=img_dir),
            pipeline=pipeline,
            test_mode=test_mode)


def test_training_skips_a_bad_image_with_a_warning(dataset_files,
                                                    log_records):
    ds = build(*dataset_files, test_mode=False)
    sample = ds[1]  # missing.jpg: another image comes instead
    assert sample['data_samples'].img_path.endswith('good.jpg')
    messages = [
        r.getMessage() for r in log_records if r.levelno >= logging.WARNING
    ]
    assert any('skipping an image while training' in m and
               'missing.jpg: no such file' in m for m in messages), messages


def test_testing_stops_on_a_bad_image_naming_it(dataset_files):
    ds = build(*dataset_files, test_mode=True)
    assert ds[0]['inputs'].shape == (3, 48, 64)
    with pytest.raises(ImageLoadError, match='text.jpg: not an image'):
        ds[2]


OPENCV_LIMIT_PROBE = '''
import sys
import cv2, numpy as np
from tood.datasets.transforms import LoadImageFromFile
from tood.errors import ImageLoadError
cv2.imwrite(sys.argv[1], np.zeros((100, 100, 3), np.uint8))
try:
    LoadImageFromFile()(dict(img_path=sys.argv[1]))
except ImageLoadError as error:
    print(error)
'''


def test_an_image_over_opencvs_pixel_limit_names_the_setting(tmp_path):
    # OpenCV reads the limit when it loads: a process of its own.
    import os
    import subprocess
    import sys
    path = str(tmp_path / 'big.png')
    repo = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))
    proc = subprocess.run(
        [sys.executable, '-c', OPENCV_LIMIT_PROBE, path],
        env=dict(os.environ, OPENCV_IO_MAX_IMAGE_PIXELS='1000',
                 PYTHONPATH=repo), capture_output=True, text=True,
        timeout=300)
    assert proc.stdout.strip() == (
        f'{path}: the image has more pixels than OpenCV decodes (1,000): '
        'set the environment variable OPENCV_IO_MAX_IMAGE_PIXELS to at '
        'least its width x height before starting'), proc.stderr[-2000:]
