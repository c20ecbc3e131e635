"""Train a detector from a config.

    python tools/train.py configs/tood/tood_r50_fpn_1x_coco.py
    bash tools/dist_train.sh configs/tood/tood_r50_fpn_1x_coco.py 8

The device is chosen by mmengine: CUDA when present, else the CPU. Without
CUDA, ``--launcher pytorch`` (torchrun) runs DDP over gloo. ``--amp``
trains in mixed precision, ``--compile`` compiles the network; both are
described in docs/training.md, as is the config switch for an exponential
moving average of the weights (``default_hooks.ema``).
"""
import argparse
import os
import sys
from typing import List, Tuple

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from tood.engine import AMP_DTYPES, load_config, run_tool, setup_amp
from tood.errors import ConfigError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--work-dir',
        help='where logs and checkpoints go; defaults to '
        'work_dirs/<config name>')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or, without a value, from the '
        'latest checkpoint in the work dir')
    parser.add_argument(
        '--amp',
        nargs='?',
        const='auto',
        choices=['auto', *AMP_DTYPES],
        help='mixed precision; without a value float16 with a dynamic loss '
        'scale on CUDA and bfloat16 on the CPU; --amp bfloat16 asks for '
        'bfloat16 on CUDA too')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile the network (backbone, neck, head); settings '
        'from the config\'s compile dict if it has one (docs/training.md)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by the total batch size / auto_scale_lr.'
        'base_batch_size')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.backbone.depth=101 '
        'train_dataloader.batch_size=4; keys missing from the config are '
        'added with a warning')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args: argparse.Namespace) -> Tuple[Config, List[str]]:
    """The config with the command line applied, and lines for the log."""
    cfg = load_config(args.config, args.cfg_options, args.launcher,
                      args.work_dir)

    messages = []
    if args.amp:
        messages.append(
            setup_amp(cfg, None if args.amp == 'auto' else args.amp))
    if args.compile:
        # A dict of torch.compile settings in the config is kept.
        cfg.compile = cfg.get('compile') or True

    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or \
                'base_batch_size' not in cfg.auto_scale_lr:
            raise ValueError('--auto-scale-lr needs auto_scale_lr.'
                             'base_batch_size in the config.')
        cfg.auto_scale_lr.enable = True

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg, messages


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        cfg, messages = build_config(args)
    except ConfigError as error:
        sys.exit(str(error))
    run_tool(cfg, 'train', Runner.train, messages)


if __name__ == '__main__':
    main()
