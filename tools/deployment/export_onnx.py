"""Export a detector to ONNX, pre- and post-processing included.

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT OUT.onnx
    python tools/deployment/export_onnx.py CONFIG CHECKPOINT OUT.onnx \\
        --dynamic --verify 'data/coco/val2017/*.jpg' --max-images 5

The graph takes the image after the config's test-pipeline resize as
uint8 BGR (B, H, W, 3), with its ``scale_factor`` (B, 2) and the original
``ori_shape`` (B, 2), and returns ``num_detections``, ``boxes``, ``scores``
and ``labels`` after class-aware NMS (``--no-nms``: per-prior ``scores``,
``boxes`` and ``priors_per_level``, which ``tood.deployment.OnnxDetector``
finishes with the same post-processing).
docs/deployment.md has the full contract. CHECKPOINT ``none`` exports the
untrained model, to check that a config exports.
"""
import argparse
import sys

from mmengine.config import DictAction

from tood.deployment import (BOX_TOL, SCORE_TOL, ExportError, export_config,
                             verify_files)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export a detector to ONNX (with pre- and '
        'post-processing) and optionally check it against PyTorch')
    parser.add_argument('config', help='config file of the model')
    parser.add_argument(
        'checkpoint', help="checkpoint file, or 'none' for untrained weights")
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='input height and width to export at (default: the test '
        "pipeline's Resize scale, or the shapes dataset's image size)")
    parser.add_argument(
        '--dynamic',
        action='store_true',
        help='any batch size, height and width (export is slower)')
    parser.add_argument(
        '--nms',
        action=argparse.BooleanOptionalAction,
        default=True,
        help='include the post-processing (thresholds, class-aware NMS, '
        'max_per_img); --no-nms returns per-prior scores and boxes')
    parser.add_argument(
        '--opset',
        type=int,
        help='ONNX opset (default 18; 19 for models with deformable '
        'convolutions, which need ONNX DeformConv)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.test_cfg.score_thr=0.3')
    parser.add_argument(
        '--verify',
        nargs='+',
        metavar='IMAGES',
        help='after exporting, compare ONNX Runtime with PyTorch on these '
        'images (files, folders or glob patterns)')
    parser.add_argument(
        '--max-images',
        type=int,
        default=20,
        help='at most this many images for --verify')
    parser.add_argument(
        '--box-tol',
        type=float,
        default=BOX_TOL,
        help='--verify: box coordinates, original-image px')
    parser.add_argument(
        '--score-tol',
        type=float,
        default=SCORE_TOL,
        help='--verify: scores, absolute')
    parser.add_argument(
        '--verbose', action='store_true', help="show the exporter's steps")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    if checkpoint is None:
        print('no checkpoint: exporting the untrained model')
    try:
        out = export_config(
            args.config,
            checkpoint,
            args.out,
            shape=tuple(args.shape) if args.shape else None,
            dynamic=args.dynamic,
            with_nms=args.nms,
            opset=args.opset,
            cfg_options=args.cfg_options)
    except ExportError as error:
        sys.exit(f'export failed: {error}')
    print(f'exported to {out} (onnx.checker passed)')
    if args.verify:
        try:
            ok = verify_files(args.config, checkpoint, out, args.verify,
                              args.cfg_options, args.max_images,
                              args.box_tol, args.score_tol)
        except FileNotFoundError as error:
            sys.exit(str(error))
        if not ok:
            sys.exit(1)


if __name__ == '__main__':
    main()
