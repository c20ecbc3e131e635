"""tools/analysis/{plot_logs,browse_dataset,confusion_matrix}.py and the
library functions behind them."""
import glob
import json
import os
import os.path as osp
import pickle
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from test_inference_tools import tiny_shapes_run
from tool_helpers import assert_ok, python_tool, run_tool

from tood.visualization import load_work_dir, plot_curves, read_scalars
from tood.analysis.browse import browse_dataset, build_dataset
from tood.analysis.confusion import (confusion_matrix, ground_truth_by_image,
                                     match_image, normalize_rows,
                                     plot_confusion_matrix)
from tood.datasets.shapes import SHAPES_CLASSES

# Trainings, exports or tools in their own processes: seconds to
# minutes each (pytest -m "not e2e" leaves them out).
pytestmark = pytest.mark.e2e

REPO_TOOLS = osp.join(osp.dirname(__file__), '..', '..', 'tools', 'analysis')


@pytest.fixture(scope='module')
def shapes_run(tmp_path_factory) -> dict:
    return tiny_shapes_run(
        str(tmp_path_factory.getbasetemp() / 'tiny_shapes_run'))


def analysis_tool(name: str, *args: str, **kwargs):
    return run_tool([sys.executable, osp.join(REPO_TOOLS, name), *args],
                    **kwargs)


# --------------------------------------------------------------- logs


def write_run(work_dir, timestamp: str, records) -> str:
    path = osp.join(str(work_dir), timestamp, 'vis_data', 'scalars.json')
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        for record in records:
            f.write((record if isinstance(record, str) else json.dumps(record))
                    + '\n')
    return path


def train_line(it: int, epoch: int, loss: float) -> dict:
    return dict(
        lr=0.01, loss=loss, loss_cls=loss / 2, loss_bbox=loss / 2,
        time=0.1, epoch=epoch, iter=it, step=it)


def val_line(epoch: int, mAP: float) -> dict:
    return {'coco/bbox_mAP': mAP, 'data_time': 0.01, 'time': 0.2,
            'step': epoch}


def test_read_scalars_splits_train_and_val_and_skips_broken_lines(tmp_path):
    path = write_run(tmp_path, '20240101_000000', [
        train_line(1, 1, 3.0), train_line(2, 1, 2.0), val_line(1, 0.1),
        '{"loss": 1.0, "it', train_line(3, 2, 1.5)
    ])
    log = read_scalars(path, 'a')
    assert [r['iter'] for r in log.train] == [1, 2, 3]
    assert [r['step'] for r in log.val] == [1]
    x, y, label = log.series('loss')
    assert (x.tolist(), y.tolist(), label) == ([1, 2, 3], [3.0, 2.0, 1.5],
                                              'iter')
    x, y, label = log.series('coco/bbox_mAP')
    assert (x.tolist(), y.tolist(), label) == ([1], [0.1], 'epoch')
    # 'time' is in both kinds of line: the training one wins.
    assert log.series('time')[2] == 'iter'
    assert {'loss', 'loss_cls', 'coco/bbox_mAP', 'lr'} <= set(log.keys())
    assert 'iter' not in log.keys()


def test_a_resumed_run_is_joined_to_the_run_it_continued(tmp_path):
    # Run 1 trained epochs 1-3 (2 iterations each) and validated after
    # each; it was resumed from epoch 2, so run 2 redoes epoch 3 and goes
    # on. A later val-only run adds nothing.
    write_run(tmp_path, '20240101_000000',
              [train_line(i, (i + 1) // 2, 10. - i) for i in range(1, 7)] +
              [val_line(e, 0.1 * e) for e in (1, 2, 3)])
    write_run(tmp_path, '20240102_000000',
              [train_line(i, (i + 1) // 2, 20. - i) for i in range(5, 9)] +
              [val_line(e, 0.5 * e) for e in (3, 4)])
    write_run(tmp_path, '20240103_000000', [val_line(0, 0.9)])
    log = load_work_dir(str(tmp_path))
    assert log.name == osp.basename(str(tmp_path))
    assert [r['iter'] for r in log.train] == list(range(1, 9))
    assert [r['loss'] for r in log.train] == [9., 8., 7., 6., 15., 14., 13.,
                                              12.]
    assert [(r['step'], r['coco/bbox_mAP']) for r in log.val] == [
        (1, 0.1), (2, 0.2), (3, 1.5), (4, 2.0)
    ]
    # Up to the first run only (what the hook of that run would see).
    first = load_work_dir(str(tmp_path), last_run='20240101_000000')
    assert len(first.train) == 6 and len(first.val) == 3
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        load_work_dir(str(tmp_path / 'nothing'))


def test_plot_curves_draws_the_keys_it_finds(tmp_path):
    path = write_run(tmp_path, '20240101_000000',
                     [train_line(i, 1, 5. / i) for i in range(1, 4)])
    log = read_scalars(path, 'run')
    out = str(tmp_path / 'plots' / 'c.png')
    assert plot_curves([log], out, ['loss', 'lr', 'coco/bbox_mAP']) == [
        'loss', 'lr'
    ]
    assert cv2.imread(out).shape == (360, 1040, 3)
    with pytest.raises(ValueError, match=r"hold \[.*'loss'"):
        plot_curves([log], out, ['nope'])


def test_plot_logs_tool_overlays_runs(shapes_run, tmp_path):
    # The real run of tools/train.py, against a made-up second run.
    other = write_run(tmp_path / 'other', '20240101_000000',
                      [train_line(i, 1, 4. / i) for i in (1, 2)] +
                      [val_line(1, 0.3)])
    out = tmp_path / 'curves.png'
    log = assert_ok(
        analysis_tool(
            'plot_logs.py', shapes_run['work_dir'], other, '--keys', 'loss',
            'loss_bbox', 'coco/bbox_mAP', 'coco/bbox_mAP_50', 'not_logged',
            '--legend', 'tiny', 'other', '--out', str(out),
            cwd=str(tmp_path)))
    assert "not in the logs, left out: ['not_logged']" in log
    assert 'coco/bbox_mAP_50 of 2 run(s) plotted' in log
    image = cv2.imread(str(out))
    assert image.shape == (720, 1040, 3)  # 2x2 panels
    # Both runs' colours (matplotlib's C0 blue and C1 orange, BGR).
    pixels = image.reshape(-1, 3).astype(int)
    for bgr in ((180, 119, 31), (14, 127, 255)):
        assert (np.abs(pixels - bgr).max(1) < 40).sum() > 50

    real = load_work_dir(shapes_run['work_dir'])
    # One epoch of 2 iterations, logged every iteration, validated once.
    assert [r['iter'] for r in real.train] == [1, 2]
    assert [r['step'] for r in real.val] == [1]


# ------------------------------------------------------------- browse


def test_browse_dataset_tool_draws_the_boxes_after_the_pipeline(
        shapes_run, tmp_path):
    out_dir = tmp_path / 'browse'
    log = assert_ok(
        analysis_tool(
            'browse_dataset.py', shapes_run['config'], '--output-dir',
            str(out_dir), '--phase', 'train', '--num-images', '3',
            cwd=str(tmp_path)))
    assert '3 images written' in log
    drawn = sorted(glob.glob(str(out_dir / '*.png')))
    assert len(drawn) == 3
    for path in drawn:
        assert cv2.imread(path).shape == (64, 64, 3)

    # Val (no flip): every box outline is drawn where the annotation is.
    cfg = Config.fromfile(shapes_run['config'])
    dataset = build_dataset(cfg, 'val')
    written = browse_dataset(dataset, str(tmp_path / 'val'), None, False)
    assert len(written) == len(dataset) == 4
    for index, path in enumerate(written):
        info = dataset.get_data_info(index)
        assert osp.basename(path) == osp.basename(info['img_path'])
        image = cv2.imread(path)
        original = cv2.imread(info['img_path'])
        changed = np.abs(image.astype(int) - original).max(-1) > 0
        for inst in info['instances']:
            x1, y1, x2, y2 = (int(round(v)) for v in inst['bbox'])
            # Outlines at the border are moved into the image.
            x2, y2 = min(x2, 63), min(y2, 63)
            # Left and right edges of the outline (labels may cover their
            # top).
            assert changed[y1:y2 + 1, x1].mean() > 0.5
            assert changed[y1:y2 + 1, x2].mean() > 0.5
        if not info['instances']:
            assert not changed.any()


# ---------------------------------------------------- confusion matrix


def boxes(*rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def test_match_image_counts_hits_mixups_misses_and_false_positives():
    gt = boxes([0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50])
    gt_labels = torch.tensor([0, 1, 1])
    pred = boxes(
        [0, 0, 10, 10],  # class 0 on the class-0 object
        [1, 1, 10, 10],  # a duplicate: the object is taken
        [20, 20, 30, 31],  # class 0 on a class-1 object: a mix-up
        [70, 70, 80, 80],  # nothing there
        [91, 91, 99, 99])  # inside a crowd region: not counted
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = torch.tensor([0, 0, 0, 1, 1])
    counts = match_image(pred, scores, labels, gt, gt_labels, 2,
                         ignored_bboxes=boxes([88, 88, 100, 100]))
    # Rows: true 0, true 1, background; columns: predicted 0, 1, bg.
    assert counts.tolist() == [
        [1, 0, 0],
        [1, 0, 1],  # the mix-up and the object at (40, 40) found by none
        [1, 1, 0],  # the duplicate and the box at (70, 70)
    ]
    # Without ground truth every detection is a false positive.
    assert match_image(pred, scores, labels, boxes(), torch.tensor([]), 2
                       ).tolist() == [[0, 0, 0], [0, 0, 0], [3, 2, 0]]


def test_normalize_rows_and_plot(tmp_path):
    counts = np.array([[3, 1, 0], [0, 0, 0], [2, 0, 0]])
    assert np.allclose(normalize_rows(counts),
                       [[0.75, 0.25, 0], [0, 0, 0], [1, 0, 0]])
    out = str(tmp_path / 'm.png')
    plot_confusion_matrix(counts, ['a', 'b'], out)
    assert cv2.imread(out) is not None
    with pytest.raises(ValueError):
        plot_confusion_matrix(counts, ['a'], out)


def test_confusion_matrix_tool_from_test_results(shapes_run, tmp_path):
    preds_file = str(tmp_path / 'preds.pkl')
    assert_ok(
        python_tool(
            'test.py', shapes_run['config'], shapes_run['checkpoint'],
            '--work-dir', str(tmp_path / 'test_work'), '--out', preds_file,
            cwd=str(tmp_path)))
    with open(preds_file, 'rb') as f:
        predictions = pickle.load(f)
    out = str(tmp_path / 'cm' / 'confusion.png')
    thr = float(np.median(
        np.concatenate([p['pred_instances']['scores'].numpy()
                        for p in predictions])))
    log = assert_ok(
        analysis_tool(
            'confusion_matrix.py', shapes_run['config'], preds_file, '--out',
            out, '--score-thr', str(thr), cwd=str(tmp_path)))
    assert f'confusion matrix of 4 images written to {out}' in log
    image = cv2.imread(out)
    # 9 x 9 cells: 0.55 in per label + 2.5 in, plus 1.2 in for the
    # colour bar, at 100 dpi.
    assert image.shape == (745, 865, 3)

    cfg = Config.fromfile(shapes_run['config'])
    dataset = build_dataset(cfg, 'test')
    gts = ground_truth_by_image(dataset)
    counts = confusion_matrix(predictions, gts, 8, thr)
    assert counts.shape == (9, 9) and counts[8, 8] == 0
    # Every object is in a row once, every kept detection in a column once
    # (no crowd regions here).
    assert counts[:8].sum() == sum(len(g['labels']) for g in gts.values())
    kept = sum(int((p['pred_instances']['scores'] >= thr).sum())
               for p in predictions)
    assert counts[:, :8].sum() == kept
    # The tool printed the same counts.
    assert str(counts[8]).replace('\n', '') in log.replace('\n', '')

    # The json of --out results.json (the documented format) gives the
    # same matrix.
    results_file = str(tmp_path / 'results.json')
    assert_ok(
        python_tool(
            'test.py', shapes_run['config'], shapes_run['checkpoint'],
            '--work-dir', str(tmp_path / 'test_work'), '--out', results_file,
            cwd=str(tmp_path)))
    json_log = assert_ok(
        analysis_tool(
            'confusion_matrix.py', shapes_run['config'], results_file,
            '--out', out, '--score-thr', str(thr), cwd=str(tmp_path)))
    assert json_log.split('counts')[1] == log.split('counts')[1]
    with pytest.raises(KeyError, match='not in the dataset'):
        confusion_matrix([dict(img_id=999, pred_instances={})], gts, 8)
    assert dataset.metainfo['classes'] == SHAPES_CLASSES


# ----------------------------------------------------- pipeline timing


def test_pipeline_timing_tool_prints_a_row_per_transform(shapes_run,
                                                         tmp_path):
    log = assert_ok(
        analysis_tool(
            'pipeline_timing.py', shapes_run['config'], '--num-images', '3',
            cwd=str(tmp_path)))
    rows = [line.split('|')[1:3] for line in log.splitlines()
            if line.startswith('| ') and 'ms per image' not in line
            and '---' not in line]
    names = [name.strip() for name, _ in rows]
    cfg = Config.fromfile(shapes_run['config'])
    assert names == [t.type for t in cfg.train_dataloader.dataset.pipeline
                     ] + ['all']
    assert all(float(ms) >= 0 for _, ms in rows)
