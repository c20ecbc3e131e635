"""Parameters and FLOPs of a detector.

    python tools/analysis/get_flops.py configs/tood/tood_r50_fpn_1x_coco.py
    python tools/analysis/get_flops.py configs/atss/atss_r50_fpn_1x_coco.py \
        --shape 800 1333

The model is built from the config (no weights are loaded) and run once on
a 1×3×H×W input, H×W padded to the data preprocessor's multiple (32):
1333×800 becomes 1344×800. Without ``--shape`` the size is the test
pipeline's resize scale. See tood/analysis/complexity.py for what is
counted.
"""
import argparse
import sys

from mmengine.config import Config, DictAction

from tood.analysis.complexity import (FLOP_NOTE, config_complexity,
                                      eval_image_shape)
from tood.analysis.results import format_giga


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Parameters and FLOPs')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        help='input height and width (one number: square); default: the '
        'test pipeline\'s resize scale')
    parser.add_argument(
        '--device', default='cpu', help='where the forward pass runs')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.bbox_head.num_classes=8')
    args = parser.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H W or one size')
    return args


def format_report(config: str, result, requested) -> str:
    h, w = result.input_shape
    lines = [
        f'config: {config}',
        f'input: 1x3x{h}x{w} (requested {requested[0]}x{requested[1]}, '
        'HxW, padded to the preprocessor\'s multiple)',
        f'params: {result.params / 1e6:.2f} M ({result.params})',
        f'FLOPs: {format_giga(result.flops)} G ({result.flops})',
    ]
    for name, flops in result.parts.items():
        lines.append(f'  {name}: {format_giga(flops)} G')
    if result.deformable_flops:
        lines.append(f'  of which deformable convs: '
                     f'{format_giga(result.deformable_flops)} G')
    lines.append(FLOP_NOTE)
    return '\n'.join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        cfg = Config.fromfile(args.config)
    except (FileNotFoundError, OSError) as error:
        sys.exit(str(error))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.shape is None:
        shape = eval_image_shape(cfg)
    elif len(args.shape) == 1:
        shape = (args.shape[0], args.shape[0])
    else:
        shape = tuple(args.shape)
    result = config_complexity(cfg, shape, args.device)
    print(format_report(args.config, result, shape))


if __name__ == '__main__':
    main()
