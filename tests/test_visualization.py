"""draw_detections and its helpers."""
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from tood.visualization import (GT_COLOR, draw_detections, draw_instances,
                                imwrite, original_image)


def gray(height=120, width=160) -> np.ndarray:
    return np.full((height, width, 3), 100, np.uint8)


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).max(-1) > 0


def test_box_outline_in_the_class_colour_and_input_untouched():
    image = gray()
    palette = [(255, 0, 0), (0, 0, 255)]  # RGB
    out = draw_detections(
        image, [[20, 40, 100, 90]], [1], palette=palette, show_text=False,
        thickness=1)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (image == 100).all()
    # Label 1 is blue in RGB, so (255, 0, 0) in BGR, on the box outline.
    assert tuple(out[40, 60]) == (255, 0, 0)
    assert tuple(out[90, 60]) == (255, 0, 0)
    assert tuple(out[65, 20]) == (255, 0, 0)
    assert tuple(out[65, 100]) == (255, 0, 0)
    # Inside and outside stay as they were.
    assert tuple(out[65, 60]) == (100, 100, 100)
    assert tuple(out[10, 10]) == (100, 100, 100)
    mask = changed(out, image)
    ys, xs = mask.nonzero()
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (20, 100, 40, 90)


def test_score_threshold_text_and_tensor_inputs():
    image = gray()
    bboxes = torch.tensor([[10., 30., 60., 80.], [90., 30., 150., 110.]])
    labels = torch.tensor([0, 1])
    scores = torch.tensor([0.9, 0.2])
    out = draw_detections(
        image, bboxes, labels, scores, class_names=['cat', 'dog'],
        score_thr=0.5)
    mask = changed(out, image)
    # The first box and its label above it are drawn, the second box not.
    assert mask[30:81, 10:61].any()
    assert mask[:30, 10:80].sum() > 30  # the text background
    assert not mask[:, 85:].any()

    all_boxes = draw_detections(image, bboxes, labels, scores)
    assert changed(all_boxes, image)[30:111, 90:151].any()

    no_text = draw_detections(
        image, bboxes, labels, scores, score_thr=0.5, show_text=False)
    assert not changed(no_text, image)[:28].any()


def test_text_stays_inside_the_image_for_boxes_at_the_border():
    image = gray(60, 60)
    out = draw_detections(image, [[0, 0, 59, 59]], [0], [0.77],
                          class_names=['a_long_class_name'])
    assert out.shape == (60, 60, 3)
    # Text goes inside the box when there is no room above it.
    assert changed(out, image)[2:12, 2:30].any()


def test_single_colour_palette_and_empty_input():
    image = gray()
    out = draw_detections(image, [[5, 5, 50, 50], [60, 60, 90, 90]], [0, 3],
                          palette=(0, 255, 0), show_text=False, thickness=1)
    assert tuple(out[5, 20]) == (0, 255, 0)
    assert tuple(out[60, 70]) == (0, 255, 0)
    empty = draw_detections(image, np.zeros((0, 4)), [], [])
    assert (empty == image).all()
    with pytest.raises(ValueError, match='2 boxes but 1 labels'):
        draw_detections(image, [[0, 0, 1, 1], [0, 0, 2, 2]], [0])


def test_label_without_name_or_palette_entry_still_draws():
    image = gray()
    out = draw_detections(image, [[20, 40, 100, 90]], [7], [0.5],
                          class_names=['only_one'], palette=[(1, 2, 3)])
    assert changed(out, image)[40:91, 20:101].any()


def test_draw_instances_puts_ground_truth_in_its_own_colour():
    image = gray()
    gt = InstanceData(
        bboxes=torch.tensor([[30., 30., 70., 70.]]),
        labels=torch.tensor([0]))
    pred = InstanceData(
        bboxes=torch.tensor([[100., 20., 140., 60.]]),
        labels=torch.tensor([0]),
        scores=torch.tensor([0.8]))
    out = draw_instances(image, pred, gt, class_names=['x'],
                         palette=[(255, 0, 0)])
    assert tuple(out[50, 30]) == GT_COLOR[::-1]
    assert tuple(out[40, 100]) == (0, 0, 255)  # red in BGR


def test_original_image_from_file_or_network_input(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3),
                                              dtype=np.uint8)
    path = imwrite(str(tmp_path / 'sub' / 'a.png'), image)
    assert (original_image(dict(img_path=path)) == image).all()

    # Doubled to 80x120 (each pixel a 2x2 block, so shrinking it back is
    # exact) and padded to 96x128 by the pipeline.
    resized = image.repeat(2, 0).repeat(2, 1)
    padded = torch.zeros(3, 96, 128, dtype=torch.uint8)
    padded[:, :80, :120] = torch.from_numpy(resized).permute(2, 0, 1)
    meta = dict(img_path=None, img_shape=(80, 120), ori_shape=(40, 60))
    back = original_image(meta, padded)
    assert back.shape == (40, 60, 3)
    assert np.abs(back.astype(int) - image).max() <= 1
    with pytest.raises(ValueError, match='cannot read'):
        original_image(dict(img_path=str(tmp_path / 'missing.png')))
