"""COCO box AP through pycocotools."""
import contextlib
import io
import json
import logging
import os.path as osp
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tood.datasets.coco import COCO_CLASSES, load_coco, match_classes
from tood.evaluation.ground_truth import sample_ground_truth, to_numpy
from tood.registry import METRICS

# Order of COCOeval.stats for boxes; the last three are AR and not reported.
_STAT_NAMES = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


@METRICS.register_module()
class CocoMetric(BaseMetric):
    """COCO bbox mAP of predictions in original-image pixels.

    Labels map to category ids through ``dataset_meta['classes']`` matched by
    name to the annotation file's categories (the rule of ``CocoDataset``).
    Only the processed images and the selected categories are evaluated, so
    a subset of a dataset or of its classes gives meaningful numbers.

    Args:
        ann_file: COCO json with the ground truth (or, with ``format_only``,
            at least the images and categories). Without it (None), as in
            MMDetection, the ground truth is built from the data samples
            (see ``tood.evaluation.ground_truth.sample_ground_truth``:
            ``gt_instances`` and ``ignored_instances``, or the record's
            ``instances`` when packed), so any dataset, VOC included, can be
            evaluated with AP@[.5:.95]; category ids are then the labels,
            ignored boxes are crowd regions and a box's area is its
            width x height (COCO json areas are segment areas, so APs/m/l
            can differ slightly from those computed with the json).
        metric: only ``'bbox'``.
        classwise: also log a per-class AP table and return
            ``bbox_{class}_AP`` for each class.
        format_only: only write the COCO result json and return ``{}``
            (for test-dev submissions).
        outfile_prefix: write ``{outfile_prefix}.bbox.json``; with
            ``format_only`` and no prefix, a new temporary folder is used.
        collect_device, prefix: as ``mmengine.evaluator.BaseMetric``.
        backend_args: accepted for MMDetection configs; files are local.
    """

    default_prefix: Optional[str] = 'coco'

    def __init__(self,
                 ann_file: Optional[str] = None,
                 metric: str = 'bbox',
                 classwise: bool = False,
                 format_only: bool = False,
                 outfile_prefix: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 backend_args: Optional[dict] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        metrics = [metric] if isinstance(metric, str) else list(metric)
        if metrics != ['bbox']:
            raise ValueError(f"only metric='bbox' is supported, got {metric}")
        self.ann_file = ann_file
        self.classwise = classwise
        self.format_only = format_only
        self.outfile_prefix = outfile_prefix
        self.backend_args = backend_args
        self._coco_gt = load_coco(ann_file) if ann_file else None
        # The last evaluation's COCOeval (unrounded stats, PR arrays).
        self.coco_eval: Optional[COCOeval] = None

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Keep each image's predictions as numpy arrays on the CPU."""
        for sample in data_samples:
            pred = sample['pred_instances']
            result = dict(
                img_id=sample['img_id'],
                bboxes=to_numpy(pred['bboxes']).reshape(-1, 4),
                scores=to_numpy(pred['scores']).reshape(-1),
                labels=to_numpy(pred['labels']).reshape(-1))
            if self._coco_gt is None:
                gt_boxes, gt_labels, gt_ignored = sample_ground_truth(sample)
                h, w = sample['ori_shape'][:2]
                result.update(
                    height=h,
                    width=w,
                    gt_bboxes=gt_boxes,
                    gt_labels=gt_labels,
                    gt_ignored=gt_ignored)
            self.results.append(result)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        # Distributed samplers pad the last round with repeated images.
        unique = {}
        for result in results:
            unique.setdefault(result['img_id'], result)
        results = list(unique.values())

        classes = (self.dataset_meta or {}).get('classes', COCO_CLASSES)
        coco_gt = self._coco_gt or self._gt_from_results(results, classes)
        classes, cat_ids = match_classes(
            coco_gt, classes, self.ann_file or 'the ground truth', log=False)
        detections = self._to_coco_json(results, cat_ids)

        outfile_prefix = self.outfile_prefix
        if self.format_only and outfile_prefix is None:
            outfile_prefix = osp.join(tempfile.mkdtemp(), 'results')
        if outfile_prefix is not None:
            outfile = f'{outfile_prefix}.bbox.json'
            with open(outfile, 'w') as f:
                json.dump(detections, f)
            print_log(f'bbox results written to {outfile}', logger='current')
        if self.format_only:
            return {}

        zeros = {f'bbox_{name}': 0.0 for name in _STAT_NAMES}
        if not detections:
            print_log(
                'no predictions at all: every bbox metric is 0',
                logger='current',
                level=logging.WARNING)
            if self.classwise:
                zeros.update({f'bbox_{name}_AP': 0.0 for name in classes})
            return zeros

        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes(detections)
        coco_eval = COCOeval(coco_gt, coco_dt, 'bbox')
        coco_eval.params.imgIds = [r['img_id'] for r in results]
        coco_eval.params.catIds = cat_ids
        summary = io.StringIO()
        with contextlib.redirect_stdout(summary):
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        print_log('\n' + summary.getvalue(), logger='current')

        # Kept for analysis and tests: the unrounded stats, the PR arrays.
        self.coco_eval = coco_eval
        metrics = {
            f'bbox_{name}': round(float(value), 3)
            for name, value in zip(_STAT_NAMES, coco_eval.stats)
        }
        if self.classwise:
            metrics.update(self._classwise_ap(coco_eval, classes))
        return metrics

    @staticmethod
    def _to_coco_json(results: List[dict], cat_ids: List[int]) -> List[dict]:
        """COCO result entries: xywh boxes with category ids."""
        detections = []
        for result in results:
            if result['labels'].size and result['labels'].max() >= len(
                    cat_ids):
                raise ValueError(
                    f'label {result["labels"].max()} of image '
                    f'{result["img_id"]} is beyond the {len(cat_ids)} classes')
            xyxy = result['bboxes'].astype(np.float64)
            xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
            for box, score, label in zip(xywh.tolist(),
                                         result['scores'].tolist(),
                                         result['labels'].tolist()):
                detections.append(
                    dict(
                        image_id=result['img_id'],
                        bbox=box,
                        score=float(score),
                        category_id=cat_ids[int(label)]))
        return detections

    @staticmethod
    def _gt_from_results(results: List[dict], classes: Sequence[str]) -> COCO:
        """A COCO api over the ground truth carried by the data samples."""
        images, annotations = [], []
        if results and not any(r['gt_labels'].size for r in results):
            print_log(
                f'none of the {len(results)} evaluated images has ground '
                'truth: is LoadAnnotations missing from the test pipeline?',
                logger='current',
                level=logging.WARNING)
        for result in results:
            images.append(
                dict(
                    id=result['img_id'],
                    width=result['width'],
                    height=result['height']))
            for (x1, y1, x2, y2), label, ignored in zip(
                    result['gt_bboxes'].tolist(), result['gt_labels'].tolist(),
                    result['gt_ignored'].tolist()):
                # Ignored boxes (COCO crowd regions, VOC difficult objects)
                # become crowd regions: COCOeval neither counts them as
                # misses nor detections on them as false positives.
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=result['img_id'],
                        category_id=int(label),
                        bbox=[x1, y1, x2 - x1, y2 - y1],
                        area=(x2 - x1) * (y2 - y1),
                        iscrowd=int(ignored)))
        coco = COCO()
        coco.dataset = dict(
            images=images,
            annotations=annotations,
            categories=[dict(id=i, name=n) for i, n in enumerate(classes)])
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    @staticmethod
    def _classwise_ap(coco_eval: COCOeval,
                      classes: Sequence[str]) -> Dict[str, float]:
        """AP over IoU 0.5:0.95 per class, logged as a table."""
        # precision: (iou thresholds, recall points, classes, area ranges,
        # max detections); -1 marks no ground truth.
        precision = coco_eval.eval['precision']
        per_class = {}
        for k, name in enumerate(classes):
            p = precision[:, :, k, 0, -1]
            p = p[p > -1]
            per_class[name] = round(float(p.mean()), 3) if p.size else float(
                'nan')
        width = max(len('class'), *(len(name) for name in classes))
        lines = [f'{"class":<{width}}  AP', '-' * (width + 7)]
        lines += [
            f'{name:<{width}}  {ap:.3f}' for name, ap in per_class.items()
        ]
        print_log('per-class bbox AP:\n' + '\n'.join(lines), logger='current')
        return {f'bbox_{name}_AP': ap for name, ap in per_class.items()}
