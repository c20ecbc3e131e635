"""Convert Pascal VOC XML annotations to a COCO detection json.

    python tools/dataset_converters/voc2coco.py \\
        data/bccd/BCCD/ImageSets/Main/trainval.txt \\
        --out data/bccd/annotations/trainval.json \\
        [--classes RBC WBC Platelets] [--img-root data/bccd/]

Several split files are concatenated (VOC07+12: pass both trainval.txt).
The boxes are those VOCDataset reads (corners minus one, MMDetection's
convention), difficult objects become crowd regions, and the input is
checked as VOCDataset checks it: a bad file stops the conversion with a
message naming every problem (docs/data.md). --out is written atomically
(a failed write leaves the previous file) and may not be a split file.
"""
import argparse
import json
import sys

from tood.datasets.converters import voc_to_coco
from tood.engine.checkpoint import atomic_write
from tood.errors import AnnotationError, OutputConflictError
from tood.output_paths import refuse_overwriting_inputs


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert VOC XML annotations to a COCO json')
    parser.add_argument(
        'splits', nargs='+',
        help='split files <voc root>/ImageSets/Main/<split>.txt')
    parser.add_argument('--out', required=True, help='the json to write')
    parser.add_argument(
        '--classes', nargs='+',
        help='category names in id order (default: every name in the XML '
        'files, sorted); objects of other classes are left out')
    parser.add_argument(
        '--img-root',
        help='image file names are relative to this folder (the config\'s '
        'data_root + data_prefix img); default: the common folder of the '
        'images')
    parser.add_argument(
        '--sub-data-root',
        help='the VOC folder (Annotations/, JPEGImages/) of all splits; '
        'default: the folder above each split file\'s ImageSets/')
    parser.add_argument('--img-suffix', default='.jpg')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        refuse_overwriting_inputs([args.out], args.splits, '--out')
    except OutputConflictError as error:
        sys.exit(str(error))
    try:
        coco = voc_to_coco(
            args.splits,
            classes=args.classes,
            img_root=args.img_root,
            sub_data_root=args.sub_data_root,
            img_suffix=args.img_suffix)
    except AnnotationError as error:
        sys.exit(str(error))
    try:
        # A temporary file renamed into place: a failed write (a full
        # disk) leaves the previous json, never half of one.
        atomic_write(args.out, json.dumps(coco))
    except OSError as error:
        sys.exit(f'{args.out} could not be written ({error}); it was left '
                 'as it was')
    names = tuple(c['name'] for c in coco['categories'])
    print(f'wrote {args.out}: {len(coco["images"])} images, '
          f'{len(coco["annotations"])} boxes, classes {names}')


if __name__ == '__main__':
    main()
