"""Download a public detection dataset into data/ in the configs' layout.

    python tools/misc/download_dataset.py bccd [--root data]
    python tools/misc/download_dataset.py voc2007 voc2012
    python tools/misc/download_dataset.py coco2017 --keep-archives
    python tools/misc/download_dataset.py --list

Archives are verified against their published MD5 (BCCD, whose GitHub
archive has none, by a digest of its files) before anything is unpacked;
see tood/datasets/download.py and docs/data.md for the layouts.
"""
import argparse
import sys

from tood.datasets.download import DOWNLOADS, DownloadError, install


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Download a dataset into data/')
    parser.add_argument(
        'names', nargs='*', metavar='NAME',
        help=f'one or more of {", ".join(sorted(DOWNLOADS))}')
    parser.add_argument(
        '--root', default='data', help='where the datasets go (default: data)')
    parser.add_argument(
        '--keep-archives', action='store_true',
        help='keep the downloaded archives in <root>/.downloads/')
    parser.add_argument(
        '--list', action='store_true', help='list the datasets and exit')
    args = parser.parse_args(argv)
    if not args.names and not args.list:
        parser.error('name a dataset, or --list')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.list:
        for name, spec in sorted(DOWNLOADS.items()):
            print(f'{name:10s} {spec.size:>7s}  {spec.description}')
        return
    for name in args.names:
        try:
            install(name, args.root, args.keep_archives)
        except DownloadError as error:
            sys.exit(str(error))


if __name__ == '__main__':
    main()
