"""CocoMetric against a tiny COCO ground truth."""
import json
import logging
import os.path as osp
import re

import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData

import tood.evaluation  # noqa: F401  (registers everything)
from tood.evaluation import CocoMetric
from tood.registry import METRICS
from tood.structures import DetDataSample

CLASSES = ('circle', 'square', 'triangle')
CAT_IDS = {'circle': 3, 'square': 7, 'triangle': 12}
# image id -> [(class, xywh, iscrowd)]; small, medium and large boxes.
GT = {
    1: [('circle', [10, 10, 20, 20], 0), ('square', [50, 50, 50, 50], 0),
        ('triangle', [20, 100, 120, 90], 0), ('circle', [150, 10, 40, 40], 1)],
    2: [('triangle', [5, 5, 15, 15], 0), ('circle', [40, 40, 60, 60], 0),
        ('square', [100, 60, 99, 110], 0)],
    3: [('square', [10, 10, 30, 30], 0)],
}


@pytest.fixture
def ann_file(tmp_path):
    annotations = []
    for img_id, anns in GT.items():
        for name, box, crowd in anns:
            annotations.append(
                dict(id=len(annotations) + 1, image_id=img_id,
                     category_id=CAT_IDS[name], bbox=box,
                     area=box[2] * box[3], iscrowd=crowd))
    path = tmp_path / 'gt.json'
    with open(path, 'w') as f:
        json.dump(
            dict(images=[dict(id=i, width=200, height=200, file_name=f'{i}')
                         for i in GT],
                 annotations=annotations,
                 categories=[dict(id=i, name=n)
                             for n, i in CAT_IDS.items()]), f)
    return str(path)


def prediction(img_id, classes=CLASSES, shift=0.0, with_crowd=False):
    """The image's ground truth as xyxy predictions in original pixels."""
    boxes, labels = [], []
    for name, (x, y, w, h), crowd in GT[img_id]:
        if name in classes and (not crowd or with_crowd):
            boxes.append([x + shift, y + shift, x + w + shift, y + h + shift])
            labels.append(classes.index(name))
    return dict(
        img_id=img_id,
        ori_shape=(200, 200),
        pred_instances=dict(
            bboxes=torch.tensor(boxes).reshape(-1, 4),
            scores=torch.linspace(0.9, 0.5, len(boxes)),
            labels=torch.tensor(labels, dtype=torch.int64)))


def evaluate(metric, samples, classes=CLASSES):
    if classes is not None:
        metric.dataset_meta = dict(classes=classes)
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def test_ground_truth_as_predictions_through_evaluator(ann_file):
    evaluator = Evaluator(
        METRICS.build(dict(type='CocoMetric', ann_file=ann_file)))
    evaluator.dataset_meta = dict(classes=CLASSES)
    samples = []
    for img_id in GT:
        pred = prediction(img_id)
        sample = DetDataSample(
            metainfo=dict(img_id=img_id, ori_shape=(200, 200)))
        sample.pred_instances = InstanceData(**pred['pred_instances'])
        samples.append(sample)
    evaluator.process(samples)
    metrics = evaluator.evaluate(len(samples))
    assert set(metrics) == {
        f'coco/bbox_{k}'
        for k in ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')
    }
    assert all(v == 1.0 for v in metrics.values()), metrics


def test_crowd_regions_are_ignored_and_summary_logged(ann_file, log_records):
    samples = [prediction(i, with_crowd=True) for i in GT]
    metrics = evaluate(CocoMetric(ann_file), samples)
    assert metrics['coco/bbox_mAP'] == 1.0
    assert any('Average Precision' in r.getMessage() for r in log_records)


def test_default_classes_use_file_categories(ann_file):
    # No dataset_meta: COCO's 80 names are absent, so labels follow the
    # file's categories sorted by id, as in CocoDataset.
    metrics = evaluate(CocoMetric(ann_file), [prediction(i) for i in GT],
                       classes=None)
    assert metrics['coco/bbox_mAP'] == 1.0


def test_shifted_boxes_score_lower(ann_file):
    metrics = evaluate(CocoMetric(ann_file),
                       [prediction(i, shift=3.0) for i in GT])
    assert 0.0 < metrics['coco/bbox_mAP'] < 1.0
    # IoU 0.5 forgives a shift that strict thresholds do not.
    assert metrics['coco/bbox_mAP_50'] > metrics['coco/bbox_mAP_75']
    # Shifting by 3 px hurts the small boxes most.
    assert metrics['coco/bbox_mAP_s'] < metrics['coco/bbox_mAP_l']


def test_duplicated_images_are_counted_once(ann_file):
    samples = [prediction(i) for i in GT] + [prediction(1)]
    assert evaluate(CocoMetric(ann_file), samples)['coco/bbox_mAP'] == 1.0


def test_only_processed_images_count(ann_file):
    metrics = evaluate(CocoMetric(ann_file), [prediction(3)])
    assert metrics['coco/bbox_mAP'] == 1.0


def test_classwise_with_selected_and_reordered_classes(ann_file,
                                                       log_records):
    classes = ('triangle', 'circle')
    metric = CocoMetric(ann_file, classwise=True)
    # The file has squares, but they are not among the classes.
    metrics = evaluate(metric, [prediction(i, classes) for i in GT], classes)
    assert metrics['coco/bbox_mAP'] == 1.0
    assert metrics['coco/bbox_triangle_AP'] == 1.0
    assert metrics['coco/bbox_circle_AP'] == 1.0
    assert not any('square' in k for k in metrics)

    table = [r.getMessage() for r in log_records
             if 'per-class' in r.getMessage()]
    assert len(table) == 1 and re.search(r'triangle\s+1\.000', table[0])


def test_classwise_missing_class(ann_file):
    metric = CocoMetric(ann_file, classwise=True)
    samples = [prediction(i, classes=('circle', 'square')) for i in GT]
    metrics = evaluate(metric, samples, CLASSES)
    assert metrics['coco/bbox_circle_AP'] == 1.0
    assert metrics['coco/bbox_square_AP'] == 1.0
    assert metrics['coco/bbox_triangle_AP'] == 0.0
    assert metrics['coco/bbox_mAP'] == pytest.approx(2 / 3, abs=1e-3)


def test_format_only_writes_coco_results(ann_file, tmp_path):
    prefix = str(tmp_path / 'out' / 'res')
    (tmp_path / 'out').mkdir()
    metric = CocoMetric(ann_file, format_only=True, outfile_prefix=prefix)
    assert evaluate(metric, [prediction(1)]) == {}
    with open(prefix + '.bbox.json') as f:
        results = json.load(f)
    assert len(results) == 3
    first = results[0]
    assert first['image_id'] == 1 and first['category_id'] == 3
    assert first['bbox'] == [10.0, 10.0, 20.0, 20.0]
    assert first['score'] == pytest.approx(0.9)
    assert {r['category_id'] for r in results} == {3, 7, 12}


def test_format_only_without_prefix_uses_a_temp_dir(ann_file, log_records):
    metric = CocoMetric(ann_file, format_only=True)
    assert evaluate(metric, [prediction(2)]) == {}
    paths = [
        m.group(1) for r in log_records
        for m in [re.search(r'written to (\S+)', r.getMessage())] if m
    ]
    assert len(paths) == 1 and osp.isfile(paths[0])
    with open(paths[0]) as f:
        assert len(json.load(f)) == 3


def test_outfile_prefix_writes_and_evaluates(ann_file, tmp_path):
    prefix = str(tmp_path / 'res')
    metric = CocoMetric(ann_file, outfile_prefix=prefix)
    metrics = evaluate(metric, [prediction(i) for i in GT])
    assert metrics['coco/bbox_mAP'] == 1.0
    with open(prefix + '.bbox.json') as f:
        assert len(json.load(f)) == 7


def test_no_predictions_give_zeros(ann_file, log_records):
    empty = [
        dict(img_id=i, ori_shape=(200, 200),
             pred_instances=dict(bboxes=torch.zeros(0, 4),
                                 scores=torch.zeros(0),
                                 labels=torch.zeros(0, dtype=torch.int64)))
        for i in GT
    ]
    metrics = evaluate(CocoMetric(ann_file, classwise=True), empty)
    assert metrics['coco/bbox_mAP'] == 0.0
    assert metrics['coco/bbox_mAP_50'] == 0.0
    assert metrics['coco/bbox_circle_AP'] == 0.0
    assert any(r.levelno == logging.WARNING for r in log_records)


def test_without_ann_file_uses_instances_from_samples():
    samples = []
    for img_id in GT:
        sample = prediction(img_id)
        sample['instances'] = [
            dict(bbox=[x, y, x + w, y + h], bbox_label=CLASSES.index(name),
                 ignore_flag=crowd)
            for name, (x, y, w, h), crowd in GT[img_id]
        ]
        samples.append(sample)
    metrics = evaluate(CocoMetric(), samples)
    assert metrics['coco/bbox_mAP'] == 1.0

    shifted = evaluate(CocoMetric(),
                       [dict(s, **prediction(s['img_id'], shift=3.0))
                        for s in samples])
    assert shifted['coco/bbox_mAP'] < 1.0

    with pytest.raises(ValueError, match='instances'):
        CocoMetric().process({}, [prediction(1)])


def confident_on_ignored(img_id):
    """The image's ground truth as predictions, plus the most confident
    detection of all on each of its ignored (crowd) boxes."""
    sample = prediction(img_id)
    pred = sample['pred_instances']
    for name, (x, y, w, h), crowd in GT[img_id]:
        if crowd:
            pred['bboxes'] = torch.cat(
                [torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32),
                 pred['bboxes']])
            pred['scores'] = torch.cat([torch.tensor([0.99]), pred['scores']])
            pred['labels'] = torch.cat(
                [torch.tensor([CLASSES.index(name)]), pred['labels']])
    return sample


@pytest.mark.parametrize('packed', ['instances', 'gt_instances'])
def test_without_ann_file_a_detection_on_an_ignored_box_is_no_error(packed):
    """Ignored boxes (COCO crowd, VOC difficult) become crowd regions: the
    top-scored detection sits on one and must not count as a false
    positive (dropping the box would make it one), nor is the box a miss.
    Both ways the samples carry them: the record's ``instances`` with
    ``ignore_flag``, or ``ignored_instances`` beside ``gt_instances`` (as
    PackDetInputs packs VOC's difficult objects)."""
    samples = []
    for img_id in GT:
        sample = confident_on_ignored(img_id)
        boxes = {0: [], 1: []}
        labels = {0: [], 1: []}
        for name, (x, y, w, h), crowd in GT[img_id]:
            boxes[crowd].append([x, y, x + w, y + h])
            labels[crowd].append(CLASSES.index(name))
        if packed == 'instances':
            sample['instances'] = [
                dict(bbox=box, bbox_label=label, ignore_flag=crowd)
                for crowd in (0, 1)
                for box, label in zip(boxes[crowd], labels[crowd])
            ]
        else:
            sample['gt_instances'], sample['ignored_instances'] = (
                dict(bboxes=torch.tensor(boxes[crowd]).reshape(-1, 4),
                     labels=torch.tensor(labels[crowd], dtype=torch.int64))
                for crowd in (0, 1))
        samples.append(sample)
    # 7 detections on the kept boxes, 1 on the crowd box.
    assert sum(len(s['pred_instances']['scores']) for s in samples) == 8
    metrics = evaluate(CocoMetric(), samples)
    assert metrics['coco/bbox_mAP'] == 1.0, metrics


def test_only_bbox_metric():
    with pytest.raises(ValueError, match='bbox'):
        CocoMetric(metric='segm')


def test_label_beyond_classes_raises(ann_file):
    sample = prediction(1)
    sample['pred_instances']['labels'][0] = 3
    with pytest.raises(ValueError, match='beyond'):
        evaluate(CocoMetric(ann_file), [sample])
