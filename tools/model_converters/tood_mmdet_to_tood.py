"""Convert a TOOD checkpoint of the official code or of MMDetection.

    python tools/model_converters/tood_mmdet_to_tood.py \\
        tood_r50_fpn_1x_coco.pth tood_r50_fpn_1x_coco_converted.pth \\
        --config configs/tood/tood_r50_fpn_1x_coco.py

The source layout (official fcjian/TOOD on MMDetection 2.14, MMDetection
2.x or 3.x) is detected from the key names and the checkpoint's meta. With
``--config`` the converted weights are also loaded strictly into the model
that config builds, so ``tools/test.py`` will not run on partly random
weights. The output is ``{'state_dict', 'meta'}`` with tensors and plain
values only.
"""
import argparse
import sys

from mmengine.config import DictAction

from tood.engine import load_config
from tood.errors import UnsafeCheckpointError
from tood.model_converters import (ConversionError, check_against_model,
                                   convert_tood_state_dict, converted_meta,
                                   detect_source, load_source_checkpoint,
                                   recorded_anchor_type, save_converted,
                                   split_checkpoint)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert an official or MMDetection TOOD checkpoint')
    parser.add_argument('src', help='the downloaded .pth')
    parser.add_argument('dst', help='where to write the converted .pth')
    parser.add_argument(
        '--config',
        help='check the converted weights against the model of this config '
        '(strict load, same anchor type)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override entries of --config, e.g. '
        'model.bbox_head.num_classes=20')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        checkpoint = load_source_checkpoint(args.src)
    except (UnsafeCheckpointError, FileNotFoundError, TypeError) as error:
        sys.exit(str(error))
    state_dict, meta = split_checkpoint(checkpoint)
    try:
        info = detect_source(state_dict, meta, checkpoint)
        print(f'{args.src}: {info.description}, {len(state_dict)} tensors')
        converted = convert_tood_state_dict(state_dict, info.format)
        if args.config:
            cfg = load_config(args.config, args.cfg_options)
            check_against_model(converted, cfg.model, meta)
            print(f'all {len(converted)} tensors load strictly into the '
                  f'model of {args.config}')
    except ConversionError as error:
        sys.exit(f'Cannot convert {args.src}: {error}')

    renamed = sum(a != b for a, b in zip(state_dict, converted))
    save_converted(args.dst, converted, converted_meta(info, args.src))
    print(f'wrote {args.dst}: {len(converted)} tensors, {renamed} renamed, '
          'none dropped')
    anchor_type = recorded_anchor_type(meta)
    if anchor_type is not None and not args.config:
        print(f'the checkpoint was trained with anchor_type={anchor_type!r}; '
              'evaluate it with a config that has the same')


if __name__ == '__main__':
    main()
