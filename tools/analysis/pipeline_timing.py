"""Milliseconds per image of each transform of a config's data pipeline.

    python tools/analysis/pipeline_timing.py CONFIG [--phase train] \\
        [--num-images 50] [--cfg-options ...]

On one thread (torch and OpenCV), as in a dataloader worker; the first
images of the dataset, after 20 untimed ones. Prints a Markdown table.
"""
import argparse
import sys

from mmengine.config import Config, DictAction

from tood.engine import (dataset_missing_message, merge_cfg_options,
                         missing_dataset_files)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Time each transform of a data pipeline')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--phase',
        choices=['train', 'val', 'test'],
        default='train',
        help='whose dataloader (and pipeline) to time')
    parser.add_argument(
        '--num-images', type=int, default=50, help='images timed')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. '
        'train_dataloader.dataset.data_root=data/my_set/')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    import cv2
    import torch

    from tood.analysis.browse import build_dataset
    from tood.analysis.pipeline_timing import time_pipeline

    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    merge_cfg_options(cfg, args.cfg_options)
    missing = missing_dataset_files(cfg, [args.phase])
    if missing:
        sys.exit(dataset_missing_message(cfg, missing))
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    dataset = build_dataset(cfg, args.phase)
    rows = time_pipeline(dataset, args.num_images)
    print('| transform | ms per image |\n| --- | ---: |')
    for name, ms in rows:
        print(f'| {name} | {ms:.2f} |')


if __name__ == '__main__':
    main()
