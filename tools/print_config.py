"""Print a config with its bases merged and the overrides applied.

    python tools/print_config.py configs/tood/tood_r50_fpn_1x_coco.py
    python tools/print_config.py CONFIG --cfg-options model.backbone.depth=101
"""
import argparse

from mmengine.config import Config, DictAction

from tood.engine import merge_cfg_options


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Print the full config')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.backbone.depth=101; keys '
        'missing from the config are added with a warning')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    merge_cfg_options(cfg, args.cfg_options)
    print(cfg.pretty_text)


if __name__ == '__main__':
    main()
