"""Convert YOLO text labels to a COCO detection json.

    python tools/dataset_converters/yolo2coco.py data/mine/images/train \\
        --names data/mine/data.yaml --out data/mine/annotations/train.json \\
        [--labels data/mine/labels/train] [--img-root data/mine/images/train]

--names is a names file (one class per line) or a YOLO dataset yaml
(names: [...] or {0: ...}). Labels default to the images folder with its
last "images" named "labels"; image sizes are read from the images. Lines
that are not "class cx cy w h" with normalised coordinates, classes beyond
the names and unreadable images stop the conversion with a message naming
each file:line (docs/data.md). --out is written atomically (a failed write
leaves the previous file) and may not be the names file.
"""
import argparse
import json
import sys

from tood.datasets.converters import read_yolo_names, yolo_to_coco
from tood.engine.checkpoint import atomic_write
from tood.errors import AnnotationError, OutputConflictError
from tood.output_paths import refuse_overwriting_inputs


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert YOLO txt labels to a COCO json')
    parser.add_argument('images', help='the folder of the images')
    parser.add_argument(
        '--names', required=True,
        help='names file (one class per line) or YOLO dataset yaml')
    parser.add_argument('--out', required=True, help='the json to write')
    parser.add_argument(
        '--labels', help='the folder of the .txt labels (default: images '
        'with its last "images" folder named "labels")')
    parser.add_argument(
        '--img-root',
        help='image file names are relative to this folder (the config\'s '
        'data_root + data_prefix img); default: the images folder')
    parser.add_argument(
        '--decimals', type=int, default=3,
        help='pixel coordinates are rounded to this many places')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        refuse_overwriting_inputs([args.out], [args.names], '--out')
    except OutputConflictError as error:
        sys.exit(str(error))
    try:
        names = read_yolo_names(args.names)
        coco = yolo_to_coco(
            args.images,
            names,
            labels_dir=args.labels,
            img_root=args.img_root,
            decimals=args.decimals)
    except AnnotationError as error:
        sys.exit(str(error))
    try:
        # A temporary file renamed into place: a failed write (a full
        # disk) leaves the previous json, never half of one.
        atomic_write(args.out, json.dumps(coco))
    except OSError as error:
        sys.exit(f'{args.out} could not be written ({error}); it was left '
                 'as it was')
    print(f'wrote {args.out}: {len(coco["images"])} images, '
          f'{len(coco["annotations"])} boxes, {len(names)} classes')


if __name__ == '__main__':
    main()
