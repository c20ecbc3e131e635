"""browse_dataset writes one drawing per image and never over an image."""
import json

import cv2
import numpy as np
import pytest

import tood.datasets  # noqa: F401  (registers everything)
from tood.analysis.browse import browse_dataset
from tood.datasets import CocoDataset
from tood.errors import OutputConflictError
from tood.utils import register_all_modules

PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs')
]


@pytest.fixture
def cats(tmp_path) -> CocoDataset:
    """cat.jpg, cat.png and dog.png in one folder, one box each."""
    register_all_modules()
    images = tmp_path / 'images'
    images.mkdir()
    coco = dict(images=[], annotations=[], categories=[dict(id=1,
                                                             name='cat')])
    for image_id, name in enumerate(('cat.jpg', 'cat.png', 'dog.png'),
                                     start=1):
        cv2.imwrite(str(images / name), np.full((32, 32, 3), 90, np.uint8))
        coco['images'].append(
            dict(id=image_id, file_name=name, width=32, height=32))
        coco['annotations'].append(
            dict(id=image_id, image_id=image_id, category_id=1,
                 bbox=[4, 4, 10, 10], area=100, iscrowd=0))
    (tmp_path / 'ann.json').write_text(json.dumps(coco))
    return CocoDataset(
        data_root=str(tmp_path), ann_file='ann.json',
        data_prefix=dict(img='images/'), metainfo=dict(classes=('cat', )),
        test_mode=True, pipeline=PIPELINE)


def test_images_sharing_a_stem_get_a_drawing_each(cats, tmp_path):
    written = browse_dataset(cats, str(tmp_path / 'out'), None, False)
    assert [p.rsplit('/', 1)[1] for p in written] == [
        'cat.jpg.png', 'cat.png.png', 'dog.png'
    ]
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == [
        'cat.jpg.png', 'cat.png.png', 'dog.png'
    ]


def test_the_image_folder_as_output_is_refused(cats, tmp_path):
    images = tmp_path / 'images'
    before = (images / 'dog.png').read_bytes()
    with pytest.raises(OutputConflictError, match=f'{images}/dog.png would '
                       'be written over the input.*--output-dir'):
        browse_dataset(cats, str(images), None, False)
    assert (images / 'dog.png').read_bytes() == before
    assert sorted(p.name for p in images.iterdir()) == [
        'cat.jpg', 'cat.png', 'dog.png'
    ]
