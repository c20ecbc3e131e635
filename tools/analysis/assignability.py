"""Before training: can the head's priors reach every ground-truth box?

    python tools/analysis/assignability.py CONFIG [--split train|val] \\
        [--out-dir DIR] [--num-images N] [--cfg-options ...]

Runs the config's pipeline over the split at each input scale it trains
(or tests) at and counts, for every GT, the priors whose point lies
inside the box (TAL's candidates) and the priors ATSS, the warm-up,
assigns to it, per pyramid level. Prints, per scale, the GTs left
without any by size (COCO small/medium/large at the network input, and
the shorter side against the strides) and by class, the candidates per
GT per level, and how many would still have none with a larger input,
2x2 tiles or a finer level. Writes ``assignability.json`` and
``assignability.png`` (histograms of candidates per GT per size) to
``--out-dir``. How to read it: docs/analysis.md.
"""
import argparse
import copy
import os.path as osp
import sys

from mmengine.config import DictAction

from tood.analysis.assignability import (audit_dataset, format_report,
                                         plot_histograms, resize_variants,
                                         summarise, write_json)
from tood.engine import (dataset_missing_message, load_config,
                         missing_dataset_files)
from tood.errors import ConfigError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Count the priors that could be assigned to each GT')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--split',
        choices=['train', 'val'],
        default='train',
        help='whose dataset and pipeline to audit')
    parser.add_argument(
        '--out-dir',
        help='where the json and png go; default: '
        'work_dirs/assignability/<config name>')
    parser.add_argument(
        '--num-images',
        type=int,
        help='audit the first N images (default: all)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. '
        'train_dataloader.dataset.data_root=data/my_set/')
    return parser.parse_args(argv)


def _dataset_cfg(cfg, split: str) -> dict:
    """The dataset config of the split, inside any wrappers
    (``RepeatDataset`` and the like keep theirs under ``dataset``)."""
    node = cfg[f'{split}_dataloader']['dataset']
    while 'pipeline' not in node and 'dataset' in node:
        node = node['dataset']
    if 'pipeline' not in node:
        raise ConfigError(f'{split}_dataloader.dataset has no pipeline')
    return node


def main(argv=None) -> None:
    args = parse_args(argv)
    from tood.registry import DATASETS, TASK_UTILS
    from tood.utils import register_all_modules

    register_all_modules()
    cfg = load_config(args.config, args.cfg_options)
    missing = missing_dataset_files(cfg, [args.split])
    if missing:
        sys.exit(dataset_missing_message(cfg, missing))
    head = cfg.model.bbox_head
    strides = tuple(head.get('strides', (8, 16, 32, 64, 128)))
    assigner_cfg = (cfg.model.get('train_cfg') or {}).get(
        'initial_assigner') or dict(type='ATSSAssigner', topk=9)
    assigner = TASK_UTILS.build(assigner_cfg)
    pad_divisor = cfg.model.get('data_preprocessor',
                                {}).get('pad_size_divisor', 1)
    classes = None
    out_dir = args.out_dir or osp.join(
        'work_dirs', 'assignability',
        osp.splitext(osp.basename(args.config))[0])

    audits, summaries = [], []
    for scale, pipeline in resize_variants(
            _dataset_cfg(cfg, args.split)['pipeline']):
        variant = copy.deepcopy(cfg[f'{args.split}_dataloader']['dataset'])
        node = variant
        while 'pipeline' not in node:
            node = node['dataset']
        node['pipeline'] = pipeline
        dataset = DATASETS.build(variant)
        classes = dataset.metainfo.get('classes') or classes
        print(f'{args.split} split at input scale {scale}:')
        audit = audit_dataset(dataset, scale, strides, assigner,
                              head.get('anchor_scale', 8), pad_divisor,
                              args.num_images)
        summary = summarise(audit, classes or ())
        audits.append(audit)
        summaries.append(summary)
        print(format_report(summary) + '\n')
    json_file = write_json(summaries, osp.join(out_dir, 'assignability.json'))
    png_file = plot_histograms(audits,
                               osp.join(out_dir, 'assignability.png'))
    print(f'written: {json_file}, {png_file}')


if __name__ == '__main__':
    main()
