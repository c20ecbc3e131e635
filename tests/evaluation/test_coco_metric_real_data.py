"""CocoMetric on real annotations: pycocotools' published demo figures,
COCO128 ground truth fed back as detections, and VOC data (BCCD) without
a COCO json."""
import json
import os.path as osp
from collections import defaultdict

import numpy as np
import pytest
from shared_data import SHARED_DATA as DATA

import tood.datasets  # noqa: F401  (registers everything)
from tood.datasets import COCO_CLASSES, CocoDataset, VOCDataset
from tood.evaluation import CocoMetric


def run_metric(metric, samples, classes):
    metric.dataset_meta = dict(classes=classes)
    metric.process({}, samples)
    return metric.evaluate(len(samples))


@pytest.mark.shared_data('cocoapi_demo')
def test_cocoapi_demo_gives_the_published_figures():
    # pycocotools' pycocoDemo: bbox results of 100 val2014 images, AP
    # 0.505 and AP50 0.697 (the README of ../shared/data has the digits).
    gt_file = osp.join(DATA, 'cocoapi_demo', 'instances_val2014_100.json')
    with open(gt_file) as f:
        gt = json.load(f)
    with open(osp.join(DATA, 'cocoapi_demo',
                       'instances_val2014_fakebbox100_results.json')) as f:
        results = json.load(f)
    name_of = {c['id']: c['name'] for c in gt['categories']}
    per_image = defaultdict(list)
    for r in results:
        per_image[r['image_id']].append(r)
    samples = []
    for image in gt['images']:
        dets = per_image[image['id']]
        samples.append(
            dict(
                img_id=image['id'],
                pred_instances=dict(
                    bboxes=np.array([[x, y, x + w, y + h]
                                     for x, y, w, h in (d['bbox']
                                                        for d in dets)
                                     ]).reshape(-1, 4),
                    scores=np.array([d['score'] for d in dets]),
                    labels=np.array([
                        COCO_CLASSES.index(name_of[d['category_id']])
                        for d in dets
                    ]))))
    metric = CocoMetric(ann_file=gt_file)
    metrics = run_metric(metric, samples, COCO_CLASSES)
    assert metrics['coco/bbox_mAP'] == 0.505
    assert metrics['coco/bbox_mAP_50'] == 0.697
    stats = metric.coco_eval.stats
    assert stats[0] == pytest.approx(0.5045806987249628, abs=1e-12)
    assert stats[1] == pytest.approx(0.6969727247299577, abs=1e-12)


@pytest.mark.shared_data('coco128')
def test_coco128_through_the_dataset_and_its_ground_truth_as_detections():
    root = osp.join(DATA, 'coco128')
    ann_file = osp.join(root, 'annotations', 'instances_train2017.json')
    dataset = CocoDataset(
        data_root=root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        test_mode=True)
    records = [dataset.get_data_info(i) for i in range(len(dataset))]
    assert len(records) == 128
    instances = [inst for r in records for inst in r['instances']]
    assert len(instances) == 939
    assert sum(inst['ignore_flag'] for inst in instances) == 10
    assert all(osp.isfile(r['img_path']) for r in records)
    assert dataset.metainfo['classes'] == COCO_CLASSES

    # Every non-crowd box as a detection (crowd regions are not objects to
    # find): AP 1.0 at every IoU threshold.
    samples = []
    for r in records:
        kept = [i for i in r['instances'] if not i['ignore_flag']]
        samples.append(
            dict(
                img_id=r['img_id'],
                pred_instances=dict(
                    bboxes=np.array([i['bbox'] for i in kept]).reshape(-1, 4),
                    scores=np.linspace(1, 0.5, len(kept)),
                    labels=np.array([i['bbox_label'] for i in kept]))))
    metric = CocoMetric(ann_file=ann_file)
    metrics = run_metric(metric, samples, dataset.metainfo['classes'])
    assert metrics['coco/bbox_mAP'] == 1.0
    assert metrics['coco/bbox_mAP_50'] == 1.0


@pytest.mark.shared_data('bccd')
def test_voc_data_with_the_coco_metric_and_no_json():
    # ann_file=None: the ground truth comes from the data samples'
    # gt_instances and ignored_instances (original frame).
    classes = ('RBC', 'WBC', 'Platelets')
    dataset = VOCDataset(
        data_root=osp.join(DATA, 'bccd'),
        ann_file='BCCD/ImageSets/Main/test.txt',
        metainfo=dict(classes=classes),
        test_mode=True)
    samples = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        boxes = np.array([x['bbox'] for x in info['instances']],
                         np.float32).reshape(-1, 4)
        labels = np.array([x['bbox_label'] for x in info['instances']])
        samples.append(
            dict(
                img_id=info['img_id'],
                ori_shape=(info['height'], info['width']),
                gt_instances=dict(bboxes=boxes, labels=labels),
                ignored_instances=dict(
                    bboxes=np.zeros((0, 4), np.float32),
                    labels=np.zeros(0, np.int64)),
                pred_instances=dict(
                    bboxes=boxes, scores=np.ones(len(boxes)),
                    labels=labels)))
    metric = CocoMetric(ann_file=None, classwise=True)
    metrics = run_metric(metric, samples, classes)
    assert metrics['coco/bbox_mAP'] == 1.0
    assert metrics['coco/bbox_Platelets_AP'] == 1.0
    # Shifted by 4 px, the boxes stay hits at IoU 0.5 but not at 0.95.
    for s in samples:
        s['pred_instances']['bboxes'] = s['pred_instances']['bboxes'] + 4
    shifted = run_metric(CocoMetric(ann_file=None), samples, classes)
    assert shifted['coco/bbox_mAP_50'] > 0.9
    assert shifted['coco/bbox_mAP'] < 0.9
