"""Images whose boxes are painted, each in its label's colour, for checking
that geometric transforms move boxes with their pixels.

After a transform, every pixel that still has a label's exact colour came
from inside a box of that label (interpolation mixes colours only at the
edges, and no mixture of two colours below is a third), so it must lie
inside a transformed box of that label.
"""
from typing import Optional, Sequence

import numpy as np

# BGR, one per label: the corners of the colour cube but black.
PALETTE = np.array([(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255),
                    (255, 0, 255), (255, 255, 0), (255, 255, 255)], np.uint8)
BACKGROUND = 60


def painted(height: int,
            width: int,
            boxes: Sequence[Sequence[float]],
            labels: Optional[Sequence[int]] = None) -> dict:
    """Pipeline results after LoadAnnotations: a grey image with each box
    (integer corners) filled with its label's colour; a box's ignore flag
    is True for odd labels (``check_aligned`` relies on it)."""
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    labels = np.arange(len(boxes)) if labels is None else np.array(labels)
    img = np.full((height, width, 3), BACKGROUND, np.uint8)
    for (x1, y1, x2, y2), label in zip(boxes.astype(int), labels):
        img[y1:y2, x1:x2] = PALETTE[label]
    return dict(
        img=img,
        img_shape=(height, width),
        ori_shape=(height, width),
        gt_bboxes=boxes,
        gt_bboxes_labels=labels.astype(np.int64),
        gt_ignore_flags=labels % 2 == 1)


def label_pixels(img: np.ndarray, label: int,
                 brightness: float = 1.0) -> np.ndarray:
    """(k, 2) x, y centres of the pixels of ``label``'s colour (times
    ``brightness``, e.g. 0.5 after blending with black)."""
    colour = np.rint(PALETTE[label] * brightness).astype(int)
    close = np.abs(img.astype(int) - colour).max(axis=-1) <= 3
    ys, xs = np.nonzero(close)
    return np.stack([xs + 0.5, ys + 0.5], axis=1)


def check_aligned(results: dict) -> None:
    """The three gt arrays: their dtypes, one row per box, and each ignore
    flag still that of its box (True for odd labels, see ``painted``)."""
    boxes = results['gt_bboxes']
    labels = results['gt_bboxes_labels']
    ignore = results['gt_ignore_flags']
    assert boxes.dtype == np.float32 and boxes.shape == (len(boxes), 4)
    assert labels.dtype == np.int64 and labels.shape == (len(boxes), )
    assert ignore.dtype == bool and ignore.shape == (len(boxes), )
    np.testing.assert_array_equal(ignore, labels % 2 == 1)


def check_boxes(results: dict,
                brightness: float = 1.0,
                filled: bool = True) -> None:
    """Boxes aligned, inside the image and of positive size; every pixel of
    a label's colour inside a box of that label; with ``filled``, every box
    of at least 4x4 pixels holding pixels of its colour (so none lost its
    place; not so after rotation, where a clipped box may keep only an
    empty corner of the box around its turned object)."""
    check_aligned(results)
    img, boxes = results['img'], results['gt_bboxes']
    labels = results['gt_bboxes_labels']
    height, width = img.shape[:2]
    assert tuple(results['img_shape']) == (height, width)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] > boxes[:, 0]).all()
    assert (boxes[:, 3] > boxes[:, 1]).all()
    for label in range(len(PALETTE)):
        points = label_pixels(img, label, brightness)
        own = boxes[labels == label]
        if len(points):
            inside = ((points[:, None, 0] >= own[None, :, 0] - 1e-3) &
                      (points[:, None, 0] <= own[None, :, 2] + 1e-3) &
                      (points[:, None, 1] >= own[None, :, 1] - 1e-3) &
                      (points[:, None, 1] <= own[None, :, 3] + 1e-3))
            outside = points[~inside.any(axis=1)]
            assert not len(outside), (
                f'label {label}: pixels {outside[:5].tolist()} outside its '
                f'boxes {own.tolist()}')
        for box in own if filled else ():
            if box[2] - box[0] < 4 or box[3] - box[1] < 4:
                continue
            held = ((points[:, 0] >= box[0]) & (points[:, 0] <= box[2]) &
                    (points[:, 1] >= box[1]) & (points[:, 1] <= box[3]))
            assert held.any(), (
                f'label {label}: box {box.tolist()} holds no pixel of its '
                'colour')
