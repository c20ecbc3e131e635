"""Tiled inference: the tiles, and the merge on a detector that sees only
its tile."""
import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import InstanceData

from tood.apis import inference_tiled, tile_windows
from tood.models.task_modules import TestCfg as Cfg
from tood.utils import register_all_modules


@pytest.mark.parametrize('size, tile, overlap', [((1000, 700), (256, 256),
                                                  0.25),
                                                 ((256, 300), (256, 256),
                                                  0.5), ((100, 90),
                                                         (256, 256), 0.2)])
def test_tiles_cover_the_image_and_overlap(size, tile, overlap):
    height, width = size
    windows = tile_windows(height, width, tile, overlap)
    covered = np.zeros(size, bool)
    for x0, y0, x1, y1 in windows:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert (y1 - y0, x1 - x0) == (min(tile[0], height),
                                      min(tile[1], width))
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = sorted({w[0] for w in windows})
    for a, b in zip(xs, xs[1:]):
        assert tile[1] - (b - a) >= overlap * tile[1] - 1


class SquareFinder:
    """A stand-in detector: finds white squares in what it is given (one
    tile), as boxes of label 0 scoring their visible area. It has the
    interface tood.apis.inference_detector uses."""

    def __init__(self):
        register_all_modules()
        self.cfg = Config(dict(test_dataloader=dict(dataset=dict(pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='PackDetInputs', meta_keys=('img_id', 'ori_shape',
                                                  'img_shape'))]))))
        self.dataset_meta = dict(classes=('square', ))
        self.test_cfg = Cfg(iou_threshold=0.5)

    def test_step(self, data):
        for inputs, sample in zip(data['inputs'], data['data_samples']):
            mask = (inputs[0] > 128).numpy().astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            boxes = [[x, y, x + w, y + h] for x, y, w, h, _ in stats[1:]]
            sample.pred_instances = InstanceData(
                bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1,
                                                                         4),
                scores=torch.tensor([a / 1e4 for *_, a in stats[1:]]),
                labels=torch.zeros(n - 1, dtype=torch.long))
        return data['data_samples']


def test_every_object_found_once_across_tiles():
    image = np.zeros((600, 500, 3), np.uint8)
    squares = [(10, 10, 40, 40), (230, 100, 270, 130),  # across a border
               (240, 240, 290, 290), (400, 520, 440, 560),
               (470, 300, 500, 330)]  # at the image border
    for x0, y0, x1, y1 in squares:
        image[y0:y1, x0:x1] = 255
    found = inference_tiled(SquareFinder(), image, 256, overlap=0.3,
                            whole=False)
    assert found.metainfo['tiles'] > 4
    boxes = sorted(found.pred_instances.bboxes.tolist())
    assert boxes == sorted([list(map(float, s)) for s in squares])
    assert found.pred_instances.class_names == ['square'] * len(squares)


def test_the_whole_image_pass_adds_what_no_tile_holds():
    image = np.zeros((600, 600, 3), np.uint8)
    image[100:500, 120:520] = 255  # larger than a tile: cut by every one
    finder = SquareFinder()
    tiles_only = inference_tiled(finder, image, 256, whole=False)
    assert len(tiles_only.pred_instances) == 0
    both = inference_tiled(finder, image, 256, whole=True)
    assert both.pred_instances.bboxes.tolist() == [[120., 100., 520., 500.]]
