"""init_detector and inference_detector on a tiny untrained TOOD."""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import save_checkpoint

from tood.apis import (detections_to_dict, find_images, inference_detector,
                       init_detector, save_predictions)
from tood.datasets.coco import COCO_CLASSES
from tood.errors import OutputConflictError
from tood.registry import MODELS
from tood.structures import DetDataSample
from tood.utils import register_all_modules

CONFIG = osp.join(
    osp.dirname(__file__), '..', '..', 'configs', 'tood',
    'tood_r50_fpn_1x_coco.py')
# A ResNet-18 TOOD with 16 channels and 2 classes that keeps every box, on
# 96x128 inputs.
TINY = {
    'model.backbone.depth': 18,
    'model.backbone.init_cfg': None,
    'model.backbone.base_channels': 16,
    'model.backbone.stem_channels': 16,
    'model.neck.in_channels': [16, 32, 64, 128],
    'model.neck.out_channels': 16,
    'model.bbox_head.in_channels': 16,
    'model.bbox_head.feat_channels': 16,
    'model.bbox_head.stacked_convs': 2,
    'model.bbox_head.norm_cfg.num_groups': 4,
    'model.bbox_head.num_classes': 2,
    'model.test_cfg.score_thr': 0.0,
    'model.test_cfg.max_per_img': 30,
    'test_dataloader.dataset.pipeline.1.scale': (128, 96),
}


@pytest.fixture(scope='module')
def config() -> Config:
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(TINY)
    return cfg


@pytest.fixture(scope='module')
def checkpoint(config, tmp_path_factory) -> tuple:
    """A randomly initialised model's weights with class names in meta."""
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(config.model)
    model.init_weights()
    path = str(tmp_path_factory.mktemp('ckpt') / 'tiny.pth')
    save_checkpoint(
        dict(
            meta=dict(dataset_meta=dict(classes=('red', 'green'))),
            state_dict=model.state_dict()), path)
    return path, model.state_dict()


@pytest.fixture(scope='module')
def images(tmp_path_factory) -> list:
    """Three 96x128 BGR images with coloured rectangles, also on disk."""
    root = tmp_path_factory.mktemp('images')
    rng = np.random.default_rng(0)
    arrays, paths = [], []
    for i in range(3):
        img = np.full((96, 128, 3), 127, np.uint8)
        x, y = rng.integers(0, 60, 2)
        cv2.rectangle(img, (int(x), int(y)), (int(x) + 40, int(y) + 30),
                      (40, 40, 220), -1)
        path = str(root / f'img_{i}.png')
        cv2.imwrite(path, img)
        arrays.append(img)
        paths.append(path)
    return arrays, paths


@pytest.fixture(scope='module')
def model(config, checkpoint):
    return init_detector(config, checkpoint[0], device='cpu')


def test_init_detector_loads_weights_and_class_names(config, checkpoint,
                                                     model):
    path, state = checkpoint
    assert not model.training
    assert model.cfg.model.bbox_head.num_classes == 2
    assert model.dataset_meta['classes'] == ('red', 'green')
    assert len(model.dataset_meta['palette']) == 2
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for key in state:
        assert torch.equal(loaded[key], state[key]), key
    assert next(model.parameters()).device.type == 'cpu'
    # 'auto' picks CUDA only when there is one.
    auto = init_detector(config, path, device='auto')
    expected = 'cuda' if torch.cuda.is_available() else 'cpu'
    assert next(auto.parameters()).device.type == expected


def test_init_detector_from_a_path_names_classes_it_cannot_know(checkpoint,
                                                                tmp_path):
    options = {k: v for k, v in TINY.items() if k.startswith('model.')}
    # No dataset_meta in the checkpoint, and the config's COCO classes do
    # not fit a 2-class head. Keys new to the config are named.
    with pytest.warns(UserWarning, match='model.backbone.base_channels'):
        model = init_detector(CONFIG, None, cfg_options=options)
    assert model.dataset_meta['classes'] == ('class_0', 'class_1')
    assert model.training is False
    # 80 classes: the config's COCO names fit.
    with pytest.warns(UserWarning):
        coco = init_detector(
            CONFIG,
            None,
            cfg_options=dict(options, **{'model.bbox_head.num_classes': 80}))
    assert coco.dataset_meta['classes'] == COCO_CLASSES


def test_path_array_and_batched_inference_agree(model, images):
    arrays, paths = images

    from_path = inference_detector(model, paths[0])
    assert isinstance(from_path, DetDataSample)
    pred = from_path.pred_instances
    assert 0 < len(pred) <= 30
    assert pred.bboxes.shape == (len(pred), 4)
    assert pred.bboxes.device.type == 'cpu'
    # Boxes in the original 128x96 frame, not the network input's.
    assert pred.bboxes[:, 0::2].max() <= 128 and pred.bboxes[:, 1::2].max(
    ) <= 96
    assert pred.labels.max() < 2
    assert pred.class_names == [('red', 'green')[i]
                                for i in pred.labels.tolist()]
    assert from_path.metainfo['ori_shape'] == (96, 128)

    from_array = inference_detector(model, arrays[0])
    torch.testing.assert_close(from_array.pred_instances.bboxes, pred.bboxes)
    torch.testing.assert_close(from_array.pred_instances.scores, pred.scores)

    mixed = inference_detector(
        model, [arrays[0], paths[1], paths[2]], batch_size=2)
    assert isinstance(mixed, list) and len(mixed) == 3
    for i, result in enumerate(mixed):
        single = inference_detector(model, paths[i])
        torch.testing.assert_close(
            result.pred_instances.bboxes,
            single.pred_instances.bboxes,
            atol=1e-3,
            rtol=1e-4)
        assert result.pred_instances.labels.tolist(
        ) == single.pred_instances.labels.tolist()


def test_inference_rejects_bad_input(config, model):
    with pytest.raises(ValueError, match=r'\(H, W, 3\) BGR'):
        inference_detector(model, np.zeros((10, 10), np.uint8))
    plain = MODELS.build(config.model)
    with pytest.raises(ValueError, match='init_detector'):
        inference_detector(plain, np.zeros((10, 10, 3), np.uint8))


def test_detections_to_dict_is_json_ready_and_sorted(model, images):
    result = inference_detector(model, images[1][0])
    thr = float(result.pred_instances.scores.median())
    data = detections_to_dict(result, 'x.png', score_thr=thr)
    assert list(data) == [
        'image', 'width', 'height', 'bboxes', 'scores', 'labels',
        'class_names'
    ]
    assert (data['image'], data['width'], data['height']) == ('x.png', 128,
                                                               96)
    n = int((result.pred_instances.scores >= thr).sum())
    assert len(data['bboxes']) == len(data['scores']) == len(
        data['labels']) == len(data['class_names']) == n
    assert data['scores'] == sorted(data['scores'], reverse=True)
    assert min(data['scores']) >= round(thr, 4) - 1e-4
    assert all(len(box) == 4 for box in data['bboxes'])
    assert data['class_names'] == [('red', 'green')[i]
                                   for i in data['labels']]


def test_find_images_from_a_file_a_folder_or_a_glob(tmp_path):
    for name in ('b.jpg', 'a.PNG', 'notes.txt'):
        (tmp_path / name).write_bytes(b'x')
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'c.jpg').write_bytes(b'x')
    folder = find_images(str(tmp_path))
    assert [osp.basename(p) for p in folder] == ['a.PNG', 'b.jpg']
    assert find_images(str(tmp_path / 'b.jpg')) == [str(tmp_path / 'b.jpg')]
    deep = find_images(str(tmp_path / '**' / '*.jpg'))
    assert [osp.relpath(p, tmp_path) for p in deep] == [
        'b.jpg', osp.join('sub', 'c.jpg')
    ]
    with pytest.raises(FileNotFoundError, match='no images'):
        find_images(str(tmp_path / '*.gif'))


def test_every_input_gets_its_own_outputs(model, images, tmp_path):
    """cat.jpg and cat.png in one folder, and a cat.png in a subfolder:
    three drawings and three jsons, each naming its own image."""
    arrays, _ = images
    folder = tmp_path / 'in'
    (folder / 'sub').mkdir(parents=True)
    paths = [str(folder / 'cat.jpg'), str(folder / 'cat.png'),
             str(folder / 'sub' / 'cat.png'), str(folder / 'dog.png')]
    for path, array in zip(paths, arrays + arrays[:1]):
        cv2.imwrite(path, array)
    out_dir = tmp_path / 'out'
    written = save_predictions(model, paths, str(out_dir), progress=False)
    assert len(set(written)) == 4
    names = sorted(osp.basename(p) for p in written)
    # A stem used once stays as it was; colliding ones keep their
    # extension, and their folder where that still collides.
    assert names == ['cat.jpg.json', 'cat.png.json', 'dog.json',
                     'sub__cat.png.json']
    for json_file, path in zip(written, paths):
        with open(json_file) as f:
            assert json.load(f)['image'] == path
        assert osp.isfile(json_file[:-len('json')] + 'png')


def test_an_output_that_is_an_input_is_refused(model, images, tmp_path):
    arrays, _ = images
    paths = [str(tmp_path / 'a.png'), str(tmp_path / 'b.jpg')]
    for path, array in zip(paths, arrays):
        cv2.imwrite(path, array)
    before = [open(p, 'rb').read() for p in paths]
    with pytest.raises(OutputConflictError) as info:
        save_predictions(model, paths, str(tmp_path), progress=False)
    message = str(info.value)
    assert paths[0] in message and 'choose another' in message
    assert [open(p, 'rb').read() for p in paths] == before
    assert not (tmp_path / 'b.png').exists()
