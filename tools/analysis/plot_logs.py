"""Plot training curves of one run or compare several.

    python tools/analysis/plot_logs.py work_dirs/tood_r18_fpn_30e_shapes
    python tools/analysis/plot_logs.py work_dirs/run_a work_dirs/run_b \
        --keys loss coco/bbox_mAP coco/bbox_mAP_50 --out compare.png

Each argument is a work dir of ``tools/train.py`` (all its runs, a resumed
run joined to the one it continued) or one ``vis_data/scalars.json``.
Training scalars are drawn against the iteration, validation metrics
against the epoch; one panel per key, one colour per run.
"""
import argparse
import os.path as osp
import sys

from tood.visualization import DEFAULT_KEYS, load_work_dir, plot_curves


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Plot training curves')
    parser.add_argument(
        'work_dirs', nargs='+', help='work dirs or scalars.json files')
    parser.add_argument(
        '--keys',
        nargs='+',
        default=list(DEFAULT_KEYS),
        help='scalars to plot (default: %(default)s)')
    parser.add_argument(
        '--legend', nargs='+', help='a name per run (default: folder names)')
    parser.add_argument('--title', help='above the plot')
    parser.add_argument(
        '--out', default='curves.png', help='the PNG to write')
    return parser.parse_args(argv)


def _default_names(paths) -> list:
    """Folder names, or longer paths where two runs share a name."""
    names = [osp.basename(osp.normpath(p)) for p in paths]
    if len(set(names)) < len(names):
        names = [osp.normpath(p) for p in paths]
    return names


def main(argv=None) -> None:
    args = parse_args(argv)
    names = args.legend or _default_names(args.work_dirs)
    if len(names) != len(args.work_dirs):
        sys.exit(f'--legend gives {len(names)} names for '
                 f'{len(args.work_dirs)} runs')
    try:
        logs = [
            load_work_dir(path, name)
            for path, name in zip(args.work_dirs, names)
        ]
        keys = plot_curves(logs, args.out, args.keys, args.title)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(str(error))
    missing = [k for k in args.keys if k not in keys]
    if missing:
        print(f'not in the logs, left out: {missing}')
    print(f'{", ".join(keys)} of {len(logs)} run(s) plotted to {args.out}')


if __name__ == '__main__':
    main()
