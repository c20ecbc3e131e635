"""Check an exported detector against PyTorch on images.

    python tools/deployment/verify_onnx.py CONFIG CHECKPOINT MODEL.onnx \\
        data/shapes/val --max-images 20

Every image goes through the config's test pipeline once for each
runtime; the detections must agree in number and pair one-to-one with the
same label, boxes within --box-tol px and scores within --score-tol.
Exits with status 1 when an image disagrees.
"""
import argparse
import sys

from mmengine.config import DictAction

from tood.deployment import BOX_TOL, SCORE_TOL, ExportError, verify_files


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Compare an exported ONNX detector with PyTorch')
    parser.add_argument('config', help='config file of the model')
    parser.add_argument(
        'checkpoint', help="checkpoint file, or 'none' for untrained weights")
    parser.add_argument('onnx', help='the exported model')
    parser.add_argument(
        'images', nargs='+', help='image files, folders or glob patterns')
    parser.add_argument(
        '--max-images', type=int, default=20, help='at most this many')
    parser.add_argument(
        '--box-tol', type=float, default=BOX_TOL,
        help='box coordinates, original-image px')
    parser.add_argument(
        '--score-tol', type=float, default=SCORE_TOL,
        help='scores, absolute')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries (as at export)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    try:
        ok = verify_files(args.config, checkpoint, args.onnx, args.images,
                          args.cfg_options, args.max_images, args.box_tol,
                          args.score_tol)
    except (FileNotFoundError, ExportError) as error:
        sys.exit(str(error))
    if not ok:
        sys.exit(1)


if __name__ == '__main__':
    main()
