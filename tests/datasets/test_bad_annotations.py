"""The annotation file is checked once at load: fatal problems are all
reported in one error, fixable ones are fixed with one warning."""
import json
import logging

import numpy as np
import pytest

from tood.datasets import CocoDataset
from tood.errors import AnnotationError

CATEGORIES = [dict(id=1, name='cat'), dict(id=5, name='dog')]


def image(i, w=100, h=80):
    return dict(id=i, file_name=f'{i}.jpg', width=w, height=h)


def ann(i, img, box, cat=1, **extra):
    return dict(
        id=i, image_id=img, category_id=cat, bbox=box, area=100, iscrowd=0,
        **extra)


def write(tmp_path, data, name='ann.json'):
    path = tmp_path / name
    if isinstance(data, (bytes, str)):
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    else:
        # allow_nan: Python's json writes NaN and Infinity literals, as
        # some converters do.
        path.write_text(json.dumps(data, allow_nan=True))
    return str(path)


def load(path, **kwargs):
    kwargs.setdefault('test_mode', True)
    return CocoDataset(ann_file=path, data_prefix=dict(img=''), **kwargs)


def test_not_json(tmp_path):
    path = write(tmp_path, '{"images": [}')
    with pytest.raises(AnnotationError, match='is not valid JSON') as info:
        load(path)
    assert path in str(info.value) and 'line 1' in str(info.value)


@pytest.mark.parametrize('data, expected', [
    ([1, 2], 'top level is a list'),
    (dict(images=[], categories=[]), "no list 'annotations'"),
    (dict(images={}, annotations=[], categories=[]), "no list 'images'"),
])
def test_not_coco(tmp_path, data, expected):
    path = write(tmp_path, data)
    with pytest.raises(AnnotationError, match='is not a COCO detection file'
                       ) as info:
        load(path)
    assert expected in str(info.value) and path in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(AnnotationError, match='does not exist') as info:
        load(str(tmp_path / 'nope.json'))
    assert 'nope.json' in str(info.value)


def test_every_fatal_problem_is_reported_at_once(tmp_path):
    data = dict(
        images=[image(1), image(2), image(2), dict(id=3, file_name='3.jpg')],
        annotations=[
            ann(10, 1, [1, 1, 10, 10], cat=99),  # unknown category
            ann(11, 1, [float('nan'), 1, 10, 10]),
            ann(12, 1, [1, 1, float('inf'), 10]),
            ann(13, 1, [1, 1, 10]),  # not 4 numbers
            ann(14, 1, [1, 1, 10, 10]),
            ann(14, 1, [2, 2, 10, 10]),  # duplicate id
            ann(15, 1, [1, 1, 10, 10], cat=98),
            dict(image_id=1, category_id=1, bbox=[1, 1, 5, 5]),  # no id
        ],
        categories=CATEGORIES)
    with pytest.raises(AnnotationError) as info:
        load(write(tmp_path, data))
    message = str(info.value)
    assert 'ann.json' in message
    expected_lines = [
        'annotation 10: category_id 99 is not among the categories [1, 5]',
        'annotation 15: category_id 98 is not among the categories',
        'annotations 11, 12: bbox has a NaN or infinite coordinate',
        'annotation 13: bbox is missing or not [x, y, width, height]',
        'annotation 14: the id is used more than once',
        'image 2: the id is used more than once',
        'image 3: width is missing or invalid',
        'image 3: height is missing or invalid',
        'position 7: the entry of \'annotations\' has no integer or string',
    ]
    for line in expected_lines:
        assert line in message, (line, message)
    assert '10 problem(s)' in message


def test_fixable_boxes_are_fixed_with_one_warning(tmp_path, log_records):
    data = dict(
        images=[image(1, w=100, h=80), image(2), image(3)],
        annotations=[
            ann(1, 1, [10, 10, 20, 20]),  # fine
            ann(2, 1, [10, 10, 0, 20]),  # zero width
            ann(3, 1, [10, 10, 20, -5]),  # negative height
            ann(4, 1, [90, -10, 30, 30]),  # partly outside: clipped
            ann(5, 1, [200, 10, 20, 20]),  # wholly outside
            ann(6, 1, [-30, 10, 30.5, 20]),  # 0.5 px inside
            ann(7, 1, [10, 10, 20, 20], cat=5),
            ann(8, 42, [10, 10, 20, 20]),  # image 42 does not exist
            ann(9, 2, [0, 0, 100, 80]),  # the whole image
        ],
        categories=CATEGORIES)
    ds = load(write(tmp_path, data))
    assert len(ds) == 3
    boxes = [i['bbox'] for i in ds.get_data_info(0)['instances']]
    assert boxes == [[10.0, 10.0, 30.0, 30.0], [90.0, 0.0, 100.0, 20.0],
                     [10.0, 10.0, 30.0, 30.0]]
    assert [i['bbox'] for i in ds.get_data_info(1)['instances']
            ] == [[0.0, 0.0, 100.0, 80.0]]
    messages = [
        r.getMessage() for r in log_records if r.levelno >= logging.WARNING
    ]
    fixed = [m for m in messages if 'annotation(s) fixed' in m]
    assert len(fixed) == 1, messages
    assert 'annotation 4: clipped to the image' in fixed[0]
    assert ('annotation 2: dropped: zero or negative width or height'
            not in fixed[0])  # grouped with 3
    assert ('annotations 2, 3: dropped: zero or negative width or height'
            in fixed[0])
    assert ('annotations 5, 6: dropped: outside the image' in fixed[0])
    ignored = [m for m in messages if 'annotation(s) ignored' in m]
    assert len(ignored) == 1
    assert 'annotation 8: image_id 42 is not among the images' in ignored[0]


def test_many_problems_are_summarised(tmp_path):
    annotations = [
        ann(i, 1, [1, 1, 5, 5], cat=7) for i in range(100, 150)
    ]
    data = dict(images=[image(1)], annotations=annotations,
                categories=CATEGORIES)
    with pytest.raises(AnnotationError) as info:
        load(write(tmp_path, data))
    message = str(info.value)
    assert '50 problem(s)' in message
    assert 'annotations 100, 101,' in message and 'and 30 more' in message


def test_images_without_annotations_and_with_a_thousand(tmp_path):
    boxes = [[(i % 40) * 2.5, (i // 40) * 3.0, 4, 5] for i in range(1000)]
    data = dict(
        images=[image(1), image(2)],
        annotations=[ann(i + 1, 2, box) for i, box in enumerate(boxes)],
        categories=CATEGORIES)
    path = write(tmp_path, data)
    test = load(path)
    assert len(test.get_data_info(0)['instances']) == 0
    assert len(test.get_data_info(1)['instances']) == 1000
    # Training skips images without boxes when filter_empty_gt is set.
    train = load(
        path, test_mode=False, filter_cfg=dict(filter_empty_gt=True))
    assert [train.get_data_info(i)['img_id'] for i in range(len(train))
            ] == [2]


@pytest.fixture
def one_thread():
    # On a busy 2-core machine two intra-op threads spin against each
    # other: this step takes seconds instead of milliseconds.
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize('epoch', [0, 1], ids=['atss', 'task_aligned'])
def test_training_step_with_no_boxes_and_with_a_thousand(epoch, one_thread,
                                                        set_epoch):
    """A batch of an image without boxes and one with 1,000 gives finite
    losses and gradients, under both assigners."""
    import torch
    from mmengine.config import Config
    from mmengine.structures import InstanceData
    from robust_helpers import CONFIG

    from tood.registry import MODELS
    from tood.structures import DetDataSample
    from tood.utils import register_all_modules

    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(CONFIG).model)
    set_epoch(epoch)  # train_cfg.initial_epoch is 1
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (1000, 2))
    wh = rng.uniform(4, 28, (1000, 2))
    boxes = torch.tensor(np.concatenate([xy, np.minimum(xy + wh, 128)], 1),
                         dtype=torch.float32)
    samples = []
    for gt_boxes in (boxes[:0], boxes):
        sample = DetDataSample(
            metainfo=dict(img_shape=(128, 128), ori_shape=(128, 128),
                          scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=gt_boxes,
            labels=torch.arange(len(gt_boxes)) % 8)
        samples.append(sample)
    data = model.data_preprocessor(
        dict(inputs=[torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8)
                     for _ in samples],
             data_samples=samples), True)
    losses = model(**data, mode='loss')
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    assert torch.isfinite(total)
    assert losses['loss_bbox'] > 0  # the 1,000 boxes were assigned
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
