"""Confusion matrix of a test run's detections, as a PNG.

    python tools/test.py CONFIG CHECKPOINT --out preds.pkl
    python tools/analysis/confusion_matrix.py CONFIG preds.pkl \
        --out confusion_matrix.png --score-thr 0.3 --iou-thr 0.5

Rows: the true class, plus ``background`` for detections that found no
object; columns: the predicted class, plus ``background`` for objects that
no detection found. Each row is normalised to 100 %. The ground truth comes
from the config's test dataset.
"""
import argparse
import sys

import numpy as np
from mmengine.config import Config, DictAction
from mmengine.fileio import load

from tood.analysis.browse import build_dataset
from tood.analysis.confusion import (confusion_matrix, ground_truth_by_image,
                                     plot_confusion_matrix)
from tood.engine import (dataset_missing_message, merge_cfg_options,
                         missing_dataset_files)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Confusion matrix of test predictions')
    parser.add_argument('config', help='the config the predictions used')
    parser.add_argument(
        'predictions', help='.pkl written by tools/test.py --out')
    parser.add_argument(
        '--out', default='confusion_matrix.png', help='the PNG to write')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='detections below this score are left out')
    parser.add_argument(
        '--iou-thr',
        type=float,
        default=0.5,
        help='overlap at which a detection finds an object')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. '
        'test_dataloader.dataset.data_root=data/my_set/')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if not args.predictions.endswith(('.pkl', '.pickle')):
        sys.exit('predictions must be the .pkl of tools/test.py --out')
    cfg = Config.fromfile(args.config)
    merge_cfg_options(cfg, args.cfg_options)
    missing = missing_dataset_files(cfg, ['test'])
    if missing:
        sys.exit(dataset_missing_message(cfg, missing))
    dataset = build_dataset(cfg, 'test')
    classes = dataset.metainfo['classes']
    predictions = load(args.predictions)
    try:
        counts = confusion_matrix(predictions, ground_truth_by_image(dataset),
                                  len(classes), args.score_thr, args.iou_thr)
    except KeyError as error:
        sys.exit(str(error.args[0]))
    plot_confusion_matrix(counts, classes, args.out)
    np.set_printoptions(linewidth=200)
    print('counts (rows: true class + background, columns: predicted '
          f'class + background):\n{counts}')
    print(f'confusion matrix of {len(predictions)} images written to '
          f'{args.out}')


if __name__ == '__main__':
    main()
