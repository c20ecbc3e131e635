"""Collect finished runs into one Markdown table.

    python tools/analysis/collect_results.py work_dirs/* --out results.md
    python tools/analysis/collect_results.py work_dirs/a work_dirs/b --no-flops

Each argument is a work dir of tools/train.py. A row per run: the config,
the last validation's AP, AP50, AP75, APs/m/l (×100) and the best AP with
its epoch, parameters and FLOPs at the test image size (the model is built
from the dumped config; --no-flops skips this), and the training time (sum
of logged iteration times). See tood/analysis/results.py for the details.
The dumped config is read without running it: a work dir whose .py holds
anything but plain values (imports, calls) is skipped with a message.
"""
import argparse
import os
import os.path as osp
import sys

from tood.analysis.complexity import FLOP_NOTE
from tood.analysis.results import collect_run, markdown_table
from tood.errors import ConfigError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Finished runs as a Markdown table')
    parser.add_argument('work_dirs', nargs='+', help='work dirs of runs')
    parser.add_argument('--out', help='also write the table to this file')
    parser.add_argument(
        '--no-flops',
        action='store_true',
        help='do not build the models to count parameters and FLOPs')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    # Files such as a plot or the previous table may match work_dirs/*.
    work_dirs = [w for w in args.work_dirs if osp.isdir(w)]
    if not work_dirs:
        sys.exit('none of the arguments is a folder')
    results, cache = [], {}
    for work_dir in work_dirs:
        try:
            results.append(collect_run(work_dir, not args.no_flops, cache))
        except (FileNotFoundError, ConfigError) as error:
            print(f'skipped {work_dir}: {error}', file=sys.stderr)
    if not results:
        sys.exit('no finished run found')
    table = markdown_table(results)
    table += ('\nAP: last validation, x100. Training time: sum of logged '
              'iteration times, validation excluded.')
    if not args.no_flops:
        table += ' ' + FLOP_NOTE
    table += '\n'
    print(table, end='')
    if args.out:
        folder = osp.dirname(args.out)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(table)


if __name__ == '__main__':
    main()
