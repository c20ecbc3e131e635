"""VOCMetric on precision-recall curves worked out by hand, on perfect
detections of the real BCCD test split, and gathered from two processes."""
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from shared_data import shared_path

import tood.evaluation  # noqa: F401  (registers the metrics)
from tood.evaluation import VOCMetric
from tood.evaluation.voc_metric import average_precision, legacy_iou

BCCD = shared_path('bccd')

# Ground truth of class 'a' (label 0), xyxy in VOCDataset's frame.
G1, G2, G3 = [0, 0, 9, 9], [20, 20, 39, 39], [50, 50, 69, 59]
HARD = [80, 0, 99, 19]  # difficult: an ignored box
NOWHERE = [200, 200, 220, 220]


def sample(img_id, gts, dets, ignored=()):
    """A data sample as the evaluator hands it over (``to_dict()``).

    gts: [(box, label)], ignored: [(box, label)], dets: [(box, score,
    label)]; ground truth as gt_instances / ignored_instances tensors.
    """
    def boxes(items):
        return torch.from_numpy(
            np.array([b for b, *_ in items], np.float32).reshape(-1, 4))

    return dict(
        img_id=img_id,
        gt_instances=dict(bboxes=boxes(gts),
                          labels=torch.tensor([lb for _, lb in gts],
                                              dtype=torch.long)),
        ignored_instances=dict(bboxes=boxes(ignored),
                               labels=torch.tensor(
                                   [lb for _, lb in ignored],
                                   dtype=torch.long)),
        pred_instances=dict(
            bboxes=boxes(dets),
            scores=torch.tensor([s for _, s, _ in dets]),
            labels=torch.tensor([lb for *_, lb in dets], dtype=torch.long)))


def evaluate(metric, samples, classes=('a', 'b', 'c')):
    metric.dataset_meta = dict(classes=classes)
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def hand_case():
    """Two images, class 'a': three boxes to find and one difficult.

    Detections by score, and what the devkit makes of them:
        0.9 on G1              TP  (tp 1, fp 0)  recall 1/3  precision 1
        0.8 on nothing         FP  (1, 1)        1/3         1/2
        0.7 on G3              TP  (2, 1)        2/3         2/3
        0.6 on G1 again        FP, a duplicate (2, 2)  2/3   1/2
        0.5 on the difficult   neither: left out of the curve
        0.4 on G2              TP  (3, 2)        1           3/5
    """
    return [
        sample('img1', [(G1, 0), (G2, 0)],
               [(G1, 0.9, 0), (NOWHERE, 0.8, 0), (G1, 0.6, 0),
                (G2, 0.4, 0)]),
        sample('img2', [(G3, 0)], [(G3, 0.7, 0), (HARD, 0.5, 0)],
               ignored=[(HARD, 0)]),
    ]


def test_hand_computed_area_ap():
    # VOC2010+ area: the precision envelope (best precision at any higher
    # recall) is 1 up to recall 1/3, 2/3 up to 2/3 and 3/5 up to 1, so
    # AP = 1/3 * (1 + 2/3 + 3/5) = 34/45.
    # Class 'b' has no ground truth and no detection (NaN, left out of the
    # mean); class 'c' has ground truth but no detection (AP 0).
    samples = hand_case()
    samples[0]['gt_instances']['bboxes'] = torch.cat(
        [samples[0]['gt_instances']['bboxes'],
         torch.tensor([[0., 50., 9., 59.]])])
    samples[0]['gt_instances']['labels'] = torch.tensor([0, 0, 2])
    metrics = evaluate(VOCMetric(eval_mode='area', classwise=True), samples)
    assert metrics['pascal_voc/AP50_a'] == pytest.approx(34 / 45, abs=1e-4)
    assert np.isnan(metrics['pascal_voc/AP50_b'])
    assert metrics['pascal_voc/AP50_c'] == 0.0
    assert metrics['pascal_voc/AP50'] == pytest.approx(34 / 45 / 2, abs=1e-4)
    assert metrics['pascal_voc/mAP'] == metrics['pascal_voc/AP50']


def test_hand_computed_11_point_ap():
    # VOC2007: the best precision at recall >= t for t = 0, 0.1, ..., 1:
    # 1 for t <= 0.3 (4 points), 2/3 for 0.4-0.6 (3 points), 3/5 for
    # 0.7-1.0 (4 points): (4 + 2 + 2.4) / 11 = 42/55.
    metrics = evaluate(VOCMetric(eval_mode='11points'), hand_case(),
                       classes=('a', ))
    assert metrics['pascal_voc/AP50'] == pytest.approx(42 / 55, abs=1e-4)


def test_average_precision_on_the_curve_directly():
    recall = np.array([1, 1, 2, 2, 3]) / 3
    precision = np.array([1, 1 / 2, 2 / 3, 1 / 2, 3 / 5])
    assert average_precision(recall, precision, 'area') == pytest.approx(
        34 / 45)
    assert average_precision(recall, precision,
                             '11points') == pytest.approx(42 / 55)
    with pytest.raises(ValueError, match='eval_mode'):
        average_precision(recall, precision, 'coco')


def test_iou_counts_inclusive_pixels_as_the_devkit():
    # 10x10 pixels against its upper 10x5 half: 50 / 100 = 0.5 with the
    # devkit's + 1 (0.44 without it), a hit at IoU 0.5.
    gt = np.array([[0, 0, 9, 9]])
    half = np.array([[0, 0, 9, 4]])
    assert legacy_iou(half, gt)[0, 0] == pytest.approx(0.5)
    metrics = evaluate(VOCMetric(), [sample('x', [(gt[0], 0)],
                                            [(half[0], 0.9, 0)])],
                       classes=('a', ))
    assert metrics['pascal_voc/AP50'] == 1.0


def test_best_match_difficult_ignores_the_detection():
    # The devkit matches a detection to the box it overlaps most; if that
    # one is difficult, the detection is ignored even though it also
    # overlaps the ordinary box enough: recall stays 0.
    ordinary, difficult = [0, 0, 19, 19], [0, 0, 19, 17]
    metrics = evaluate(VOCMetric(), [
        sample('x', [(ordinary, 0)], [(difficult, 0.9, 0)],
               ignored=[(difficult, 0)])
    ], classes=('a', ))
    assert metrics['pascal_voc/AP50'] == 0.0


def test_perfect_detections_give_one_and_thresholds_average():
    samples = [
        sample(i, [(G1, 0), (G2, 1)], [(G1, 0.8, 0), (G2, 0.3, 1)])
        for i in range(3)
    ]
    for mode in ('area', '11points'):
        metrics = evaluate(VOCMetric(eval_mode=mode, iou_thrs=[0.5, 0.75]),
                           [dict(s) for s in samples], classes=('a', 'b'))
        assert metrics == {
            'pascal_voc/mAP': 1.0,
            'pascal_voc/AP50': 1.0,
            'pascal_voc/AP75': 1.0
        }


def test_instances_in_meta_keys_are_used_first():
    # The dataset record (original frame) wins over gt_instances.
    s = sample('x', [([0, 0, 99, 99], 0)], [(G1, 0.9, 0)])
    s['instances'] = [dict(bbox=G1, bbox_label=0, ignore_flag=0)]
    assert evaluate(VOCMetric(), [s],
                    classes=('a', ))['pascal_voc/AP50'] == 1.0


def test_arguments_are_checked():
    with pytest.raises(ValueError, match='eval_mode'):
        VOCMetric(eval_mode='101points')
    with pytest.raises(ValueError, match='mAP'):
        VOCMetric(metric='recall')
    with pytest.raises(ValueError, match='iou_thrs'):
        VOCMetric(iou_thrs=1.5)
    with pytest.raises(ValueError, match='beyond the 1 classes'):
        evaluate(VOCMetric(), [sample('x', [(G1, 0)], [(G1, 0.9, 3)])],
                 classes=('a', ))


@pytest.mark.shared_data('bccd')
def test_perfect_detections_on_bccd_test_split():
    from tood.datasets import VOCDataset
    dataset = VOCDataset(
        data_root=BCCD,
        ann_file='BCCD/ImageSets/Main/test.txt',
        metainfo=dict(classes=('RBC', 'WBC', 'Platelets')),
        test_mode=True)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        boxes = np.array([x['bbox'] for x in info['instances']]).reshape(-1, 4)
        labels = np.array([x['bbox_label'] for x in info['instances']])
        samples.append(
            dict(
                img_id=info['img_id'],
                instances=info['instances'],
                pred_instances=dict(
                    bboxes=boxes, scores=rng.random(len(boxes)),
                    labels=labels)))
    metric = VOCMetric(eval_mode='area', classwise=True)
    metric.dataset_meta = dataset.metainfo
    metric.process({}, samples)
    metrics = metric.evaluate(len(dataset))
    assert all(v == 1.0 for v in metrics.values()), metrics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _two_process_worker(rank, port, samples, out):
    """Rank ``rank`` of two evaluating its share of ``samples`` as
    mmengine's DefaultSampler deals them out (interleaved, the last round
    padded with the first image)."""
    import torch.distributed as dist
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
        world_size=2)
    try:
        padded = samples + samples[:len(samples) % 2]
        metric = VOCMetric(eval_mode='area')
        metric.dataset_meta = dict(classes=('a', 'b', 'c'))
        counted = []
        compute = metric.compute_metrics
        metric.compute_metrics = lambda results: (
            counted.append(len(results)) or compute(results))
        metric.process({}, padded[rank::2])
        metrics = metric.evaluate(len(samples))
        if rank == 0:
            torch.save(dict(metrics=metrics, counted=counted), out)
    finally:
        dist.destroy_process_group()


@pytest.mark.e2e
def test_two_processes_count_every_image_once(tmp_path):
    # Five images: rank 0 gets 0, 2, 4 and rank 1 gets 1, 3 and image 0
    # again (padding). BaseMetric.evaluate gathers the results in dataset
    # order and cuts them to the dataset size: 5 results reach
    # compute_metrics and the AP is that of one process.
    samples = hand_case() + [
        sample(f'extra{i}', [(G1, 1)], [(G1, 0.5 + i / 10, 1),
                                        (G2, 0.45, 1)]) for i in range(3)
    ]
    expected = evaluate(VOCMetric(eval_mode='area'),
                        [dict(s) for s in samples])
    out = str(tmp_path / 'metrics.pt')
    mp.spawn(_two_process_worker, args=(free_port(), samples, out),
             nprocs=2, join=True)
    result = torch.load(out)
    assert result['counted'] == [5]
    assert result['metrics'] == expected
