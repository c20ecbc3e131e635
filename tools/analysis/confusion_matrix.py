"""Confusion matrix of a test run's detections, as a PNG.

    python tools/test.py CONFIG CHECKPOINT --out results.json
    python tools/analysis/confusion_matrix.py CONFIG results.json \
        --out confusion_matrix.png --score-thr 0.3 --iou-thr 0.5

The detections are the json of ``tools/test.py --out results.json`` (COCO's
result format; plain data). The ``.pkl`` of ``--out preds.pkl`` is read too,
with the checkpoints' allow-list: a pickle holding anything but tensors,
arrays, numbers, strings and containers is refused by name, unread.

Rows: the true class, plus ``background`` for detections that found no
object; columns: the predicted class, plus ``background`` for objects that
no detection found. Each row is normalised to 100 %. The ground truth comes
from the config's test dataset.
"""
import argparse
import json
import pickle
import sys
from typing import List

import numpy as np
from mmengine.config import Config, DictAction

from tood.analysis.browse import build_dataset
from tood.analysis.confusion import (confusion_matrix, ground_truth_by_image,
                                     plot_confusion_matrix,
                                     predictions_from_coco_results)
from tood.engine import (dataset_missing_message, load_pickle,
                         merge_cfg_options, missing_dataset_files)
from tood.errors import UnsafeCheckpointError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Confusion matrix of test predictions')
    parser.add_argument('config', help='the config the predictions used')
    parser.add_argument(
        'predictions',
        help='results.json (or preds.pkl) written by tools/test.py --out')
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


def read_predictions(path: str, dataset, gts: dict) -> List[dict]:
    """Per-image predictions from the json or pickle at ``path``; exits
    with one message naming the file when it cannot be used."""
    try:
        if path.endswith('.json'):
            with open(path, encoding='utf-8') as f:
                results = json.load(f)
            cat_ids = getattr(dataset, 'cat_ids', None) or list(
                range(len(dataset.metainfo['classes'])))
            return predictions_from_coco_results(results, path, list(gts),
                                                 cat_ids)
        predictions = load_pickle(path)
    except UnsafeCheckpointError as error:
        sys.exit(str(error))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        sys.exit(f'{path} is not valid JSON: {error}')
    except (OSError, EOFError, pickle.UnpicklingError) as error:
        sys.exit(f'{path} cannot be read: {error}')
    except ValueError as error:
        sys.exit(str(error))
    if not isinstance(predictions, list) or not all(
            isinstance(p, dict) and 'img_id' in p and 'pred_instances' in p
            for p in predictions):
        sys.exit(f'{path} is not the list of predictions that '
                 'tools/test.py --out preds.pkl writes')
    return predictions


def main(argv=None) -> None:
    args = parse_args(argv)
    if not args.predictions.endswith(('.json', '.pkl', '.pickle')):
        sys.exit('predictions must be the .json (or .pkl) of tools/test.py '
                 '--out')
    cfg = Config.fromfile(args.config)
    merge_cfg_options(cfg, args.cfg_options)
    missing = missing_dataset_files(cfg, ['test'])
    if missing:
        sys.exit(dataset_missing_message(cfg, missing))
    dataset = build_dataset(cfg, 'test')
    classes = dataset.metainfo['classes']
    gts = ground_truth_by_image(dataset)
    predictions = read_predictions(args.predictions, dataset, gts)
    try:
        counts = confusion_matrix(predictions, gts, len(classes),
                                  args.score_thr, args.iou_thr)
    except KeyError as error:
        sys.exit(f'{args.predictions}: {error.args[0]}')
    plot_confusion_matrix(counts, classes, args.out)
    np.set_printoptions(linewidth=200)
    print('counts (rows: true class + background, columns: predicted '
          f'class + background):\n{counts}')
    print(f'confusion matrix of {len(predictions)} images written to '
          f'{args.out}')


if __name__ == '__main__':
    main()
