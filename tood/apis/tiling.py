"""Large images in tiles: detect at the model's native scale.

A detector trained on images of some size shrinks a much larger image to
that size, and objects of a few pixels then fall below its finest stride.
``inference_tiled`` runs the detector over overlapping tiles of the
original image instead (each tile is the model's input size, so the test
pipeline's resize leaves it as it is), plus optionally the whole image
resized as usual for the objects larger than a tile, and merges:

1. a tile's detection that touches one of the tile's inner edges (an edge
   that is not the image border) is dropped: its object goes on beyond
   the tile, and the neighbouring tile, which overlaps it, or the whole
   image sees it entire;
2. what is left of every tile and of the whole image goes through
   class-aware NMS at the model's ``test_cfg`` IoU threshold (duplicates
   of objects inside two overlapping tiles).

Objects up to the overlap in size are seen whole by some tile. It works
with any detector ``tood.apis.inference_detector`` takes: a checkpoint's
model or an exported one.
"""
import argparse
import math
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.structures import InstanceData
from torchvision.ops import batched_nms

from tood.datasets.transforms import LoadImageFromFile
from tood.structures import DetDataSample

from .inference import ImageInput, inference_detector, label_names

Window = Tuple[int, int, int, int]  # x0, y0, x1, y1


def add_tile_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tile [SIZE]``, ``--tile-overlap`` and ``--no-whole``, as
    ``tools/infer.py`` and ``tools/test.py`` take them; read back with
    :func:`tile_size`."""
    parser.add_argument(
        '--tile',
        type=int,
        nargs='*',
        metavar='SIZE',
        help='detect in overlapping tiles of the original images at the '
        'model\'s native scale (large images with small objects, '
        'docs/deployment.md); SIZE: tile side, or H W (default: the test '
        'pipeline\'s input size)')
    parser.add_argument(
        '--tile-overlap', type=float, default=0.25,
        help='share of a tile that neighbouring tiles overlap')
    parser.add_argument(
        '--no-whole', action='store_true',
        help='with --tile, skip the pass over the whole resized image')


def tile_size(sizes: Sequence[int]) -> Optional[Tuple[int, int]]:
    """``--tile``'s values as (height, width): one side for square tiles,
    none for the test pipeline's input size (``None``)."""
    return tuple((list(sizes) * 2)[:2]) or None


def tile_windows(height: int, width: int, tile: Tuple[int, int],
                 overlap: float) -> List[Window]:
    """Tiles of ``tile`` = (h, w) covering an image, neighbours overlapping
    by at least ``overlap`` of a tile; the last tile of a row or column
    ends at the border. A side smaller than the tile gets one tile of its
    own size."""
    def starts(size: int, length: int) -> List[int]:
        if size <= length:
            return [0]
        step = max(1, int(length * (1 - overlap)))
        count = math.ceil((size - length) / step) + 1
        # Spread evenly, the last one flush with the border.
        return [round(i * (size - length) / (count - 1))
                for i in range(count)]

    th, tw = tile
    return [(x, y, min(x + tw, width), min(y + th, height))
            for y in starts(height, th) for x in starts(width, tw)]


def _inner_edge_mask(boxes: torch.Tensor, window: Window, height: int,
                     width: int, margin: float) -> torch.Tensor:
    """(M,) True for boxes (tile pixels) that touch an inner edge."""
    x0, y0, x1, y1 = window
    w, h = x1 - x0, y1 - y0
    touch = torch.zeros(len(boxes), dtype=torch.bool)
    if x0 > 0:
        touch |= boxes[:, 0] <= margin
    if y0 > 0:
        touch |= boxes[:, 1] <= margin
    if x1 < width:
        touch |= boxes[:, 2] >= w - margin
    if y1 < height:
        touch |= boxes[:, 3] >= h - margin
    return touch


def inference_tiled(model,
                    image: ImageInput,
                    tile: Union[int, Tuple[int, int]],
                    overlap: float = 0.25,
                    whole: bool = True,
                    batch_size: int = 1,
                    edge_margin: float = 1.0) -> DetDataSample:
    """Detect objects in one large image, tile by tile (module docstring).

    Args:
        model: as ``inference_detector`` takes it (``init_detector``'s
            model or an exported one).
        image: a path or an (H, W, 3) uint8 BGR array.
        tile: (h, w) of a tile (or one side): the model's input size
            (``default_input_shape(model.cfg)``), so the test pipeline
            leaves tiles unscaled.
        overlap: share of a tile that neighbours overlap.
        whole: also detect on the whole image (resized by the test
            pipeline, as without tiles), for objects larger than a tile.
        batch_size: tiles per forward pass.
        edge_margin: px; a box this close to a tile's inner edge touches it.
    Returns:
        A ``DetDataSample`` of the whole image, ``pred_instances`` in its
        pixels (``bboxes``, ``scores``, ``labels``, ``class_names``), best
        first.
    """
    array = image if isinstance(image, np.ndarray) else LoadImageFromFile()(
        dict(img_path=str(image)))['img']
    height, width = array.shape[:2]
    tile = (tile, tile) if isinstance(tile, int) else tuple(tile)
    windows = tile_windows(height, width, tile, overlap)
    crops = [np.ascontiguousarray(array[y0:y1, x0:x1])
             for x0, y0, x1, y1 in windows]
    boxes, scores, labels = [], [], []
    for window, found in zip(
            windows, inference_detector(model, crops, batch_size)):
        pred = found.pred_instances
        keep = ~_inner_edge_mask(pred.bboxes, window, height, width,
                                 edge_margin)
        offset = pred.bboxes.new_tensor(window[:2]).repeat(2)
        boxes.append(pred.bboxes[keep] + offset)
        scores.append(pred.scores[keep])
        labels.append(pred.labels[keep])
    if whole and len(windows) > 1:
        pred = inference_detector(model, array).pred_instances
        boxes.append(pred.bboxes)
        scores.append(pred.scores)
        labels.append(pred.labels)
    boxes, scores, labels = (torch.cat(boxes).float(),
                             torch.cat(scores).float(), torch.cat(labels))
    keep = batched_nms(boxes, scores, labels, _iou_threshold(model))
    merged = InstanceData(bboxes=boxes[keep], scores=scores[keep],
                          labels=labels[keep])
    merged.class_names = label_names(model, merged.labels)
    sample = DetDataSample(metainfo=dict(
        ori_shape=(height, width), img_shape=(height, width),
        img_path=image if isinstance(image, str) else None,
        tiles=len(windows)))
    sample.pred_instances = merged
    return sample


def _iou_threshold(model) -> float:
    """The NMS IoU threshold the model's post-processing uses."""
    head = getattr(model, 'bbox_head', None)
    test_cfg = getattr(head, 'test_cfg', None) or getattr(
        model, 'test_cfg', None)
    return float(test_cfg.iou_threshold)
