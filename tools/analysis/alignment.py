"""Measure task alignment (TOOD, Fig. 1) of a checkpoint on the val set.

    python tools/analysis/alignment.py CONFIG CHECKPOINT \\
        [--num-images 500] [--num-figures 8] [--out-dir DIR] [--name NAME]
    python tools/analysis/alignment.py --compare A/alignment.json \\
        B/alignment.json [--out-dir DIR]

For every ground-truth box: the prior with the highest score of its class
and the prior whose predicted box overlaps it most (both among the priors
inside the box), the distance between them, the IoU of the top-scored
prediction and the score-IoU correlations; definitions in
``tood/analysis/alignment.py``. Writes ``alignment.json`` (definitions,
per-box rows, summary), ``alignment.md`` (the summary as a table) and, for
the first ``--num-figures`` images, ``figures/*_alignment.png``. Run it for
several checkpoints (e.g. one trained with ATSS only and one with TAL) and
``--compare`` their json files for one table.
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys

import torch
from mmengine.config import DictAction
from mmengine.runner import load_checkpoint

from tood.analysis.alignment import (DEFINITIONS, analyse_dataset,
                                     markdown_table, write_json)
from tood.datasets import prepare_data
from tood.engine import load_config, setup_checkpoint_io
from tood.errors import UnsafeCheckpointError
from tood.registry import DATASETS, MODELS
from tood.utils import register_all_modules


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Task-alignment analysis of a TOOD checkpoint')
    parser.add_argument('config', nargs='?', help='model and val set config')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint file')
    parser.add_argument(
        '--num-images', type=int, help='analyse the first N val images '
        '(default: all)')
    parser.add_argument(
        '--num-figures', type=int, default=4,
        help='draw Fig.-1-style figures for the first N images')
    parser.add_argument(
        '--out-dir', help='default: work_dirs/alignment/<config name>')
    parser.add_argument(
        '--name', help='the model\'s name in tables (default: config name)')
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--compare', nargs='+', metavar='JSON',
        help='only tabulate the summaries of these alignment.json files')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries')
    args = parser.parse_args(argv)
    if args.compare is None and (args.config is None
                                 or args.checkpoint is None):
        parser.error('give CONFIG and CHECKPOINT, or --compare JSON ...')
    return args


def analysis_dataset_cfg(loader_cfg: dict) -> dict:
    """The val dataset with annotations loaded right after the image, so
    that resizing moves the boxes into the network input's frame (test
    pipelines load them after resizing, in the original frame, for the
    metric), and with the metainfo the analysis records."""
    dataset_cfg = copy.deepcopy(loader_cfg['dataset'])
    if 'pipeline' not in dataset_cfg:
        raise ValueError('the val dataset has no pipeline of its own '
                         '(a dataset wrapper?); point --cfg-options at a '
                         'plain dataset')
    pipeline = [
        t for t in dataset_cfg['pipeline'] if t['type'] != 'LoadAnnotations'
    ]
    load = next((i for i, t in enumerate(pipeline)
                 if t['type'] == 'LoadImageFromFile'), None)
    if load is None:
        raise ValueError('the val pipeline has no LoadImageFromFile')
    pipeline.insert(load + 1, dict(type='LoadAnnotations', with_bbox=True))
    for t in pipeline:
        if t['type'] == 'PackDetInputs' and 'meta_keys' in t:
            t['meta_keys'] = tuple(t['meta_keys']) + tuple(
                k for k in ('img_id', 'img_path', 'img_shape')
                if k not in t['meta_keys'])
    dataset_cfg['pipeline'] = pipeline
    return dataset_cfg


def compare(paths, out_dir) -> None:
    named = []
    for path in paths:
        with open(path) as f:
            payload = json.load(f)
        named.append((payload.get('name', path), payload['summary']))
    table = markdown_table(named)
    print(table)
    if out_dir:
        write_text(osp.join(out_dir, 'comparison.md'), table)


def write_text(path: str, text: str) -> None:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.compare:
        compare(args.compare, args.out_dir)
        return

    register_all_modules()
    setup_checkpoint_io()
    cfg = load_config(args.config, args.cfg_options)
    config_name = osp.splitext(osp.basename(args.config))[0]
    out_dir = args.out_dir or osp.join('work_dirs', 'alignment', config_name)
    name = args.name or config_name

    model = MODELS.build(cfg.model)
    try:
        load_checkpoint(model, args.checkpoint, map_location='cpu',
                        strict=True)
    except UnsafeCheckpointError as error:
        sys.exit(str(error))
    model.to(args.device).eval()
    # The shapes data is drawn first if the config's preparer makes it.
    prepare_data(cfg, ['val'])
    dataset = DATASETS.build(analysis_dataset_cfg(cfg.val_dataloader))

    rows, summary = analyse_dataset(
        model, dataset, args.num_images, args.num_figures,
        osp.join(out_dir, 'figures'))
    write_json(
        osp.join(out_dir, 'alignment.json'),
        dict(
            name=name,
            config=args.config,
            checkpoint=args.checkpoint,
            definitions=DEFINITIONS,
            summary=summary,
            rows=rows))
    table = markdown_table([(name, summary)])
    write_text(osp.join(out_dir, 'alignment.md'), table)
    print(table)
    print(f'per-box rows, summary and figures in {out_dir}')


if __name__ == '__main__':
    main()
