"""Drawing boxes on images: the one routine every tool and hook uses.

Colours follow a dataset's ``palette`` metainfo (RGB, as in MMDetection);
images are OpenCV's BGR ``uint8`` arrays throughout.
"""
import os
import os.path as osp
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch

from .palette import make_palette

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]
Color = Tuple[int, int, int]

# Boxes of ground truth drawn beside predictions (RGB): one colour for all
# classes, so they read as "the answer" rather than as another class.
GT_COLOR: Color = (255, 255, 255)

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _as_numpy(values: Optional[ArrayLike], dtype) -> Optional[np.ndarray]:
    if values is None:
        return None
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def default_palette(num_classes: int) -> list:
    """The palette datasets use when they set none (RGB tuples)."""
    return make_palette(num_classes)


def _bgr(color: Sequence[int]) -> Color:
    r, g, b = (int(c) for c in color)
    return b, g, r


def _text_color(bgr: Color) -> Color:
    """Black on light backgrounds, white on dark ones."""
    b, g, r = bgr
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255,
                                                                      255,
                                                                      255)


def draw_detections(image_bgr: np.ndarray,
                    bboxes: ArrayLike,
                    labels: ArrayLike,
                    scores: Optional[ArrayLike] = None,
                    class_names: Optional[Sequence[str]] = None,
                    palette: Optional[Union[Sequence[Sequence[int]],
                                            Sequence[int]]] = None,
                    score_thr: float = 0.0,
                    show_text: bool = True,
                    thickness: Optional[int] = None) -> np.ndarray:
    """Boxes with their class name and score drawn on a copy of an image.

    Args:
        image_bgr: (H, W, 3) uint8, BGR.
        bboxes: (N, 4) xyxy in the image's pixels (array, tensor or list).
        labels: (N,) class indices.
        scores: (N,) confidences, or None for ground truth (then nothing is
            filtered and no score is written).
        class_names: names by label; labels beyond them are written as
            numbers.
        palette: RGB colours by label (a dataset's ``palette`` metainfo), or
            one RGB colour for every box; default: ``default_palette``.
        score_thr: boxes scoring below it are left out.
        show_text: write "name score" above each box.
        thickness: line width in px; default grows with the image size.
    Returns:
        The drawn (H, W, 3) uint8 BGR image; the input is left untouched.
        Higher-scoring boxes are drawn last, so they stay readable where
        boxes overlap.
    """
    image = np.ascontiguousarray(image_bgr, dtype=np.uint8).copy()
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'expected an (H, W, 3) image, got {image.shape}')
    bboxes = _as_numpy(bboxes, np.float64).reshape(-1, 4)
    labels = _as_numpy(labels, np.int64).reshape(-1)
    scores = _as_numpy(scores, np.float64)
    if len(labels) != len(bboxes) or (scores is not None
                                      and len(scores) != len(bboxes)):
        raise ValueError(f'{len(bboxes)} boxes but {len(labels)} labels '
                         f'and {None if scores is None else len(scores)} '
                         'scores')

    order = np.arange(len(bboxes))
    if scores is not None:
        order = order[scores >= score_thr]
        order = order[np.argsort(scores[order], kind='stable')]

    if palette is not None and len(palette) and np.isscalar(palette[0]):
        colors = [_bgr(palette)] * (int(labels.max(initial=-1)) + 1)
    else:
        if palette is None or len(palette) <= labels.max(initial=-1):
            palette = default_palette(
                max(int(labels.max(initial=-1)) + 1, len(class_names or ())))
        colors = [_bgr(c) for c in palette]

    height, width = image.shape[:2]
    if thickness is None:
        thickness = max(1, round(max(height, width) / 300))
    font_scale = float(np.clip(min(height, width) / 800, 0.35, 1.0))
    # Boxes reaching the border (COCO's x + w is one past the last pixel)
    # stay visible.
    bboxes = bboxes.round().clip(0, [width - 1, height - 1] * 2)
    for i in order:
        x1, y1, x2, y2 = (int(v) for v in bboxes[i])
        label = int(labels[i])
        color = colors[label]
        cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness)
        if not show_text:
            continue
        name = (class_names[label] if class_names is not None
                and 0 <= label < len(class_names) else str(label))
        text = name if scores is None else f'{name} {scores[i]:.2f}'
        (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, font_scale,
                                                     1)
        box_h = text_h + baseline + 2
        # Above the box where there is room, else just inside its top.
        top = y1 - box_h if y1 - box_h >= 0 else max(y1, 0)
        left = min(max(x1, 0), max(width - text_w - 2, 0))
        cv2.rectangle(image, (left, top), (left + text_w + 2, top + box_h),
                      color, -1)
        cv2.putText(image, text, (left + 1, top + text_h + 1), _FONT,
                    font_scale, _text_color(color), 1, cv2.LINE_AA)
    return image


def draw_instances(image_bgr: np.ndarray,
                   pred_instances=None,
                   gt_instances=None,
                   class_names: Optional[Sequence[str]] = None,
                   palette=None,
                   score_thr: float = 0.0) -> np.ndarray:
    """Ground truth (thin, ``GT_COLOR``, no text) under predictions.

    Args:
        pred_instances: anything with ``bboxes``, ``labels``, ``scores``
            (e.g. ``DetDataSample.pred_instances``), or None.
        gt_instances: anything with ``bboxes`` and ``labels``, or None.
        class_names, palette, score_thr: as ``draw_detections``.
    """
    image = image_bgr
    if gt_instances is not None and len(gt_instances.bboxes):
        image = draw_detections(
            image,
            gt_instances.bboxes,
            gt_instances.labels,
            palette=GT_COLOR,
            show_text=False,
            thickness=1)
    if pred_instances is not None:
        image = draw_detections(
            image,
            pred_instances.bboxes,
            pred_instances.labels,
            pred_instances.scores,
            class_names=class_names,
            palette=palette,
            score_thr=score_thr)
    return np.ascontiguousarray(image)


def original_image(metainfo: dict,
                   network_input: Optional[torch.Tensor] = None
                   ) -> np.ndarray:
    """A sample's image in its original size, BGR uint8 (H, W, 3).

    Read from ``metainfo['img_path']`` when that file exists; otherwise (a
    generated or in-memory image) the pipeline's output ``network_input``
    ((3, h, w) uint8 before normalisation, BGR as loaded) is cropped to
    ``img_shape`` and resized back to ``ori_shape``.
    """
    img_path = metainfo.get('img_path')
    if img_path and osp.isfile(img_path):
        image = cv2.imread(img_path, cv2.IMREAD_COLOR)
        if image is not None:
            return image
    if network_input is None:
        raise ValueError(f'cannot read {img_path!r} and no network input '
                         'was given')
    height, width = metainfo['img_shape'][:2]
    image = network_input[:, :height, :width].permute(1, 2, 0)
    image = np.ascontiguousarray(image.cpu().numpy().astype(np.uint8))
    ori_h, ori_w = metainfo.get('ori_shape', (height, width))[:2]
    if (ori_h, ori_w) != (height, width):
        image = cv2.resize(image, (ori_w, ori_h))
    return image


def imwrite(path: str, image: np.ndarray) -> str:
    """Write an image, creating its folder; returns ``path``."""
    folder = osp.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    if not cv2.imwrite(path, image):
        raise OSError(f'could not write {path}')
    return path
