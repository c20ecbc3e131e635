"""After training: where to set the score threshold, per class.

    python tools/analysis/operating_point.py CONFIG CHECKPOINT
    python tools/analysis/operating_point.py CONFIG CHECKPOINT \\
        --predictions preds.pkl          # from tools/test.py --out preds.pkl
    python tools/analysis/operating_point.py CONFIG CHECKPOINT --write \\
        [--onnx MODEL.onnx] [--iou 0.5|0.5:0.95]

Evaluates the checkpoint on the config's test set (or reads the
predictions ``tools/test.py --out`` dumped) with COCO's evaluation, and
from its precision-recall arrays finds, per class and for all classes
together, the score threshold of largest F1, at IoU 0.5 and averaged over
0.5:0.95. Prints the table and writes ``operating_points.json`` and
``operating_points.png`` (precision-recall per class, F1 against the
threshold) to ``--out-dir``. ``--write`` stores the per-class thresholds
of ``--iou`` in the checkpoint (and with ``--onnx`` in an exported model)
for ``tools/infer.py --score-thr auto``. The curves end at the config's
``model.test_cfg.score_thr``: lower it to see below. Definitions:
docs/analysis.md.
"""
import argparse
import copy
import os.path as osp
import pickle
import sys

from mmengine.config import DictAction

from tood.analysis.operating_point import (IOU_SETTINGS, format_table,
                                           operating_points,
                                           plot_operating_points,
                                           thresholds_for, write_json)
from tood.engine import (dataset_missing_message, load_config, load_pickle,
                         missing_dataset_files, run_tool)
from tood.errors import UnsafeCheckpointError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='F1-optimal score thresholds per class')
    parser.add_argument('config', help='config of the model and test set')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--predictions',
        help='.pkl written by tools/test.py --out, instead of running the '
        'model again')
    parser.add_argument(
        '--out-dir',
        help='where the json, the png and the log go; default: '
        'work_dirs/operating_point/<config name>')
    parser.add_argument(
        '--iou',
        choices=IOU_SETTINGS,
        default='0.5',
        help='whose thresholds --write stores')
    parser.add_argument(
        '--write',
        action='store_true',
        help="store the per-class thresholds in the checkpoint's meta")
    parser.add_argument(
        '--onnx',
        help='with --write, store them in this exported model too')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.test_cfg.score_thr=0.001')
    args = parser.parse_args(argv)
    if args.onnx and not args.write:
        parser.error('--onnx goes with --write')
    return args


def coco_metric_cfg(cfg) -> dict:
    """The config's CocoMetric (its annotation file kept), else one that
    takes the ground truth from the data samples (VOC-style data)."""
    evaluators = cfg.get('test_evaluator') or []
    if isinstance(evaluators, dict):
        evaluators = [evaluators]
    found = [e for e in evaluators if e.get('type') == 'CocoMetric']
    metric = copy.deepcopy(dict(found[0])) if found else dict(
        type='CocoMetric', ann_file=None)
    metric.update(classwise=False, format_only=False, outfile_prefix=None)
    return metric


def evaluate_checkpoint(cfg, checkpoint: str):
    """Run the test loop with only a CocoMetric; returns the metric."""
    cfg.test_evaluator = coco_metric_cfg(cfg)
    cfg.load_from = checkpoint
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
        dict(type='TestProgressBarHook')
    ]

    def test(runner):
        runner.test()
        return runner.test_evaluator.metrics[0]

    return run_tool(cfg, 'test', test)


def evaluate_predictions(cfg, predictions: str):
    """Feed the dumped predictions to a CocoMetric; returns the metric.

    The file is read with the checkpoint allow-list: a shared ``.pkl``
    that would build other objects (and so could run code) is refused.
    """
    from tood.analysis.browse import build_dataset
    from tood.registry import METRICS

    missing = missing_dataset_files(cfg, ['test'])
    if missing:
        sys.exit(dataset_missing_message(cfg, missing))
    try:
        samples = load_pickle(predictions)
    except UnsafeCheckpointError as error:
        sys.exit(str(error))
    except (OSError, EOFError, pickle.UnpicklingError) as error:
        sys.exit(f'{predictions} cannot be read: {error}')
    if not isinstance(samples, list) or not all(
            isinstance(s, dict) and 'pred_instances' in s for s in samples):
        sys.exit(f'{predictions} is not the .pkl of tools/test.py --out '
                 '(a list of per-image predictions)')
    metric = METRICS.build(coco_metric_cfg(cfg))
    metric.dataset_meta = build_dataset(cfg, 'test').metainfo
    metric.process({}, samples)
    metric.compute_metrics(metric.results)
    return metric


def main(argv=None) -> None:
    args = parse_args(argv)
    from tood.datasets.coco import match_classes
    from tood.utils import register_all_modules

    register_all_modules()
    out_dir = args.out_dir or osp.join(
        'work_dirs', 'operating_point',
        osp.splitext(osp.basename(args.config))[0])
    cfg = load_config(args.config, args.cfg_options, work_dir=out_dir)
    if not osp.isfile(args.checkpoint):
        sys.exit(f'Checkpoint {args.checkpoint} does not exist.')
    if args.predictions:
        if not args.predictions.endswith(('.pkl', '.pickle')):
            sys.exit('--predictions must be the .pkl of tools/test.py --out')
        metric = evaluate_predictions(cfg, args.predictions)
    else:
        metric = evaluate_checkpoint(cfg, args.checkpoint)
    coco_eval = metric.coco_eval
    if coco_eval is None:
        sys.exit('The model detected nothing on the test set: there is no '
                 'precision-recall curve to read a threshold from.')
    classes, _ = match_classes(coco_eval.cocoGt,
                               metric.dataset_meta['classes'], log=False)

    points = operating_points(coco_eval, classes)
    print(format_table(points, classes))
    json_file = write_json(points, osp.join(out_dir,
                                            'operating_points.json'))
    png_file = plot_operating_points(
        coco_eval, classes, points, osp.join(out_dir,
                                             'operating_points.png'))
    print(f'written: {json_file}, {png_file}')
    if not args.write:
        return

    from tood.deployment.score_thresholds import (
        write_checkpoint_thresholds, write_onnx_thresholds)
    try:
        thresholds = thresholds_for(points, classes, args.iou)
    except ValueError as error:
        sys.exit(str(error))
    write_checkpoint_thresholds(args.checkpoint, thresholds)
    print(f'per-class thresholds at IoU {args.iou} written to '
          f'{args.checkpoint}')
    if args.onnx:
        write_onnx_thresholds(args.onnx, thresholds)
        print(f'... and to {args.onnx}')
    if thresholds['fallback']:
        print('without ground truth in the test set, these take the '
              f'overall threshold: {", ".join(thresholds["fallback"])}')


if __name__ == '__main__':
    main()
