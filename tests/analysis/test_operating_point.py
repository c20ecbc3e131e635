"""F1-optimal score thresholds from pycocotools' precision-recall arrays,
on detections whose F1 at every threshold is worked out by hand, and
storing the thresholds in checkpoints and ONNX files."""
import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tood.analysis.operating_point import (format_table, operating_points,
                                           plot_operating_points,
                                           thresholds_for)
from tood.deployment.score_thresholds import (read_score_thresholds,
                                              thresholds_for_classes,
                                              write_checkpoint_thresholds,
                                              write_onnx_thresholds)
from tood.engine import load_from_local
from tood.errors import ConfigError

CLASSES = ('a', 'b', 'c', 'd', 'e')
BOX = [10, 10, 20, 20]  # xywh
# Shifted right by 6 px: IoU 14 / 26 = 0.54 with BOX.
SHIFTED = [16, 10, 20, 20]


def evaluate(detections) -> COCOeval:
    """Class a: one object in each of images 1-4; b: in images 1 and 2;
    c: in image 3, never detected; d: in image 4, detected only where it
    is not; e: no object."""
    objects = [(1, 0), (2, 0), (3, 0), (4, 0), (1, 1), (2, 1), (3, 2),
               (4, 3)]
    gt = COCO()
    gt.dataset = dict(
        images=[dict(id=i, width=100, height=100) for i in range(1, 6)],
        annotations=[
            dict(id=n + 1, image_id=image, category_id=k, bbox=BOX,
                 area=400, iscrowd=0)
            for n, (image, k) in enumerate(objects)
        ],
        categories=[dict(id=k, name=n) for k, n in enumerate(CLASSES)])
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([
            dict(image_id=image, category_id=k, bbox=box, score=score)
            for image, k, box, score in detections
        ])
        coco_eval = COCOeval(gt, dt, 'bbox')
        coco_eval.params.catIds = list(range(len(CLASSES)))
        coco_eval.evaluate()
        coco_eval.accumulate()
    return coco_eval


# Class a, by falling score: TP .9, TP .8, FP .7 (image 5 has no a),
# TP .6, FP .3, TP .2. Keeping scores >= c gives F1 .4, .667, .571, .75,
# .667, .8: best at .2 (P 4/6, R 1). Class b: TP .95, TP .85, FP .5,
# FP .4: best at .85 (F1 1). One threshold for both: mean F1 .7 at .85,
# .833 at .8, .875 at .6 (a .75, b 1), .775 at .5, .733 at .2.
DETECTIONS = [
    (1, 0, BOX, 0.9), (2, 0, BOX, 0.8), (5, 0, BOX, 0.7), (3, 0, BOX, 0.6),
    (5, 0, [50, 50, 10, 10], 0.3), (4, 0, BOX, 0.2),
    (1, 1, BOX, 0.95), (2, 1, BOX, 0.85), (3, 1, BOX, 0.5),
    (4, 1, BOX, 0.4),
    (1, 3, BOX, 0.9),
]


def test_f1_optimal_thresholds_per_class_and_overall():
    points = operating_points(evaluate(DETECTIONS), CLASSES)
    at50 = points['0.5']
    assert at50['classes']['a'] == pytest.approx(
        dict(score_thr=0.2, f1=0.8, precision=4 / 6, recall=1.0))
    assert at50['classes']['b'] == pytest.approx(
        dict(score_thr=0.85, f1=1.0, precision=1.0, recall=1.0))
    # c: objects but no detection; d: only a false positive.
    assert at50['classes']['c']['score_thr'] is None
    assert at50['classes']['d']['score_thr'] is None
    assert at50['classes']['d']['f1'] == 0
    # e has no object at all.
    assert at50['classes']['e'] is None
    # The overall threshold maximises the mean F1 over a, b, c and d.
    assert at50['overall'] == pytest.approx(
        dict(score_thr=0.6, f1=(0.75 + 1 + 0 + 0) / 4))
    # Exact boxes: the same at every IoU threshold.
    assert points['0.5:0.95']['classes']['a'] == pytest.approx(
        at50['classes']['a'])


def test_thresholds_averaged_over_the_iou_thresholds():
    # b's second hit overlaps its object at IoU 0.54: a match at IoU 0.5
    # only, so over 0.5:0.95 keeping it pays less.
    detections = [(1, 1, BOX, 0.95), (2, 1, SHIFTED, 0.85)]
    points = operating_points(evaluate(detections), CLASSES)
    assert points['0.5']['classes']['b'] == pytest.approx(
        dict(score_thr=0.85, f1=1.0, precision=1.0, recall=1.0))
    # .95 alone: P 1, R .5, F1 2/3 at every IoU threshold. Adding .85: F1
    # 1 at IoU 0.5, P .5, R .5, F1 .5 at 0.55-0.95; mean (1 + 9 * .5) /
    # 10 = .55.
    row = points['0.5:0.95']['classes']['b']
    assert row['score_thr'] == pytest.approx(0.95)
    assert row['f1'] == pytest.approx(2 / 3)


def test_thresholds_to_store_fall_back_to_the_overall_one(tmp_path):
    coco_eval = evaluate(DETECTIONS)
    points = operating_points(coco_eval, CLASSES)
    stored = thresholds_for(points, CLASSES, '0.5')
    assert stored['score_thr'] == pytest.approx([0.2, 0.85, 0.6, 0.6, 0.6])
    assert stored['fallback'] == ['c', 'd', 'e']
    assert stored['iou'] == '0.5'
    table = format_table(points, CLASSES)
    assert '| a | 0.200 | 0.800 | 0.667 | 1.000 |' in table
    png = plot_operating_points(coco_eval, CLASSES, points,
                                str(tmp_path / 'op.png'))
    assert (tmp_path / 'op.png').stat().st_size > 0 and png


THRESHOLDS = dict(classes=['a', 'b'], score_thr=[0.2, 0.85], overall=0.6,
                  iou='0.5', fallback=[])


def test_thresholds_in_a_checkpoint_keep_everything_else(tmp_path):
    path = str(tmp_path / 'model.pth')
    weights = {'w': torch.arange(6.).reshape(2, 3)}
    torch.save(dict(state_dict=weights,
                    meta=dict(epoch=3, dataset_meta=dict(classes=('a', 'b'))),
                    optimizer=dict(state={})), path)
    assert read_score_thresholds(path) is None
    write_checkpoint_thresholds(path, THRESHOLDS)
    write_checkpoint_thresholds(path, {**THRESHOLDS, 'overall': 0.5})
    checkpoint = load_from_local(path)
    assert torch.equal(checkpoint['state_dict']['w'], weights['w'])
    assert checkpoint['meta']['epoch'] == 3
    assert checkpoint['optimizer'] == dict(state={})
    assert read_score_thresholds(path)['overall'] == 0.5
    # In the model's class order, by name.
    assert thresholds_for_classes(path, ['b', 'a']) == [0.85, 0.2]
    with pytest.raises(ConfigError, match='c missing'):
        thresholds_for_classes(path, ['a', 'c'])


def test_thresholds_in_an_onnx_model(tmp_path):
    onnx = pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node('Identity', ['x'], ['y'])], 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 17)])
    entry = model.metadata_props.add()
    entry.key, entry.value = 'tood.format', 'tood-detector/1'
    path = str(tmp_path / 'model.onnx')
    onnx.save(model, path)
    with pytest.raises(ConfigError, match='holds no score thresholds'):
        thresholds_for_classes(path, ['a', 'b'])
    write_onnx_thresholds(path, {**THRESHOLDS, 'overall': 0.1})
    write_onnx_thresholds(path, THRESHOLDS)
    meta = ort.InferenceSession(
        path, providers=['CPUExecutionProvider']).get_modelmeta(
        ).custom_metadata_map
    assert meta['tood.format'] == 'tood-detector/1'
    assert json.loads(meta['tood.score_thresholds']) == THRESHOLDS
    assert thresholds_for_classes(path, ['a', 'b']) == [0.2, 0.85]
    keys = [e.key for e in onnx.load(path).metadata_props]
    assert keys.count('tood.score_thresholds') == 1


def test_false_positives_below_the_last_recall_point_count():
    # b reaches all its objects at .85; its false positives at .5 and .4
    # come after. COCOeval's interpolated arrays end at .85 (the recall
    # grid has no point past 1.0), so a threshold of .2 would look as
    # good as .85 for b; counted from the matches it gives P .5.
    points = operating_points(evaluate(DETECTIONS), CLASSES)
    from tood.analysis.operating_point import class_matches, f1_curve
    b = class_matches(evaluate(DETECTIONS), 1)
    assert b.num_objects == 2 and b.scores.tolist() == [.95, .85, .5, .4]
    f1, p, r = f1_curve(b, [0], np.array([0.85, 0.2]))
    assert f1.tolist() == pytest.approx([1.0, 2 / 3])
    assert p.tolist() == pytest.approx([1.0, 0.5])
    assert points['0.5']['overall']['score_thr'] == pytest.approx(0.6)


def test_a_crowd_object_neither_counts_nor_makes_false_positives():
    coco_eval = evaluate(DETECTIONS)
    gt = coco_eval.cocoGt
    crowd = dict(id=100, image_id=5, category_id=0, bbox=[60, 60, 20, 20],
                 area=400, iscrowd=1)
    gt.dataset['annotations'].append(crowd)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([dict(image_id=i, category_id=k, bbox=b, score=s)
                         for i, k, b, s in DETECTIONS] +
                        [dict(image_id=5, category_id=0,
                              bbox=[60, 60, 20, 20], score=0.99)])
        again = COCOeval(gt, dt, 'bbox')
        again.params.catIds = list(range(len(CLASSES)))
        again.evaluate()
    points = operating_points(again, CLASSES)
    assert points['0.5']['classes']['a'] == pytest.approx(
        operating_points(coco_eval, CLASSES)['0.5']['classes']['a'])
