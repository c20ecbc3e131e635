"""Draw a dataset's boxes on its images after the pipeline, to check data.

    python tools/analysis/browse_dataset.py CONFIG --output-dir browse
    python tools/analysis/browse_dataset.py CONFIG --phase val --num-images 0

Images are taken as the model gets them (training augmentation included
with ``--phase train``) and written as ``OUTPUT_DIR/<stem>.png`` (images
that share a stem keep their extension: ``cat.jpg.png``); an
``--output-dir`` where a drawing would replace an image of the dataset is
refused before anything is written.
"""
import argparse
import sys

from mmengine.config import Config, DictAction

from tood.analysis.browse import browse_dataset, build_dataset
from tood.engine import (dataset_missing_message, merge_cfg_options,
                         missing_dataset_files)
from tood.errors import OutputConflictError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Draw ground-truth boxes on pipeline outputs')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--output-dir', default='browse_dataset', help='where images go')
    parser.add_argument(
        '--phase',
        choices=['train', 'val', 'test'],
        default='train',
        help='whose dataloader (and pipeline) to use')
    parser.add_argument(
        '--num-images',
        type=int,
        default=20,
        help='how many images, from the first; 0: all')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. '
        'train_dataloader.dataset.data_root=data/my_set/')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    merge_cfg_options(cfg, args.cfg_options)
    missing = missing_dataset_files(cfg, [args.phase])
    if missing:
        sys.exit(dataset_missing_message(cfg, missing))
    dataset = build_dataset(cfg, args.phase)
    try:
        written = browse_dataset(dataset, args.output_dir, args.num_images)
    except OutputConflictError as error:
        sys.exit(str(error))
    print(f'{len(written)} images written to {args.output_dir}')


if __name__ == '__main__':
    main()
