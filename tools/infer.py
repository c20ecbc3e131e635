"""Detect objects in images with a trained checkpoint.

    python tools/infer.py demo.jpg CONFIG CHECKPOINT
    python tools/infer.py images/ CONFIG CHECKPOINT --out-dir outputs
    python tools/infer.py 'data/**/*.png' CONFIG CHECKPOINT --score-thr 0.5
    python tools/infer.py images/ CONFIG MODEL.onnx  # ONNX Runtime
    python tools/infer.py images/ CONFIG MODEL.onnx --runtime openvino
    python tools/infer.py images/ CONFIG CHECKPOINT --score-thr auto

For every image, ``OUT_DIR/<stem>.png`` shows the boxes with class names
and scores and ``OUT_DIR/<stem>.json`` holds them: ``image``, ``width``,
``height``, ``bboxes`` ([x1, y1, x2, y2] pixels), ``scores``, ``labels``,
``class_names``, best first. ``--score-thr auto`` uses the per-class
thresholds that ``tools/analysis/operating_point.py --write`` stored in the
checkpoint or ONNX file (docs/analysis.md). Images that share a stem keep
their extension (``cat.jpg.png``, ``cat.png.png``); an ``--out-dir`` where
an output would replace an input image is refused before anything is
written.
"""
import argparse
import os.path as osp
import sys
from typing import Union

from mmengine.config import DictAction

from tood.apis import (add_tile_arguments, default_input_shape, find_images,
                       inference_tiled, init_detector, save_predictions,
                       tile_size)
from tood.deployment import RUNTIMES
from tood.engine import exit_if_user_error
from tood.errors import ConfigError, OutputConflictError


def score_thr_arg(value: str) -> Union[float, str]:
    """A number, or 'auto'."""
    if value == 'auto':
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a number or 'auto', not {value!r}") from None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Detect objects in images and draw them')
    parser.add_argument(
        'input', help='an image, a folder of images or a glob pattern')
    parser.add_argument('config', help='config file of the model')
    parser.add_argument(
        'checkpoint',
        help='checkpoint file, or an exported .onnx model (fp32 or INT8) '
        'to run with --runtime')
    parser.add_argument(
        '--runtime',
        choices=RUNTIMES,
        default='onnxruntime',
        help='what runs an .onnx model: ONNX Runtime or OpenVINO '
        '(docs/deployment.md)')
    parser.add_argument(
        '--out-dir', default='outputs', help='where the results go')
    parser.add_argument(
        '--score-thr',
        type=score_thr_arg,
        default=0.3,
        help='detections scoring below this are neither drawn nor saved; '
        "'auto': the per-class thresholds stored in the checkpoint or ONNX "
        'file by tools/analysis/operating_point.py --write')
    parser.add_argument(
        '--device', default='auto', help="'cpu', 'cuda', 'cuda:0' or 'auto'")
    parser.add_argument(
        '--batch-size', type=int, default=1, help='images per forward pass')
    add_tile_arguments(parser)
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.test_cfg.max_per_img=50')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        paths = find_images(args.input)
    except FileNotFoundError as error:
        sys.exit(str(error))
    if args.checkpoint.endswith('.onnx'):
        # An exported model (tools/deployment/export_onnx.py): the runtime
        # stands in for PyTorch behind the same pipeline, json and drawings.
        from tood.deployment import ExportError, OnnxDetector
        try:
            model = OnnxDetector(args.checkpoint, args.config,
                                 args.cfg_options, args.device,
                                 runtime=args.runtime)
        except ExportError as error:
            sys.exit(str(error))
    else:
        if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
            sys.exit(f'checkpoint {args.checkpoint} does not exist')
        try:
            model = init_detector(args.config, args.checkpoint, args.device,
                                  args.cfg_options)
        except Exception as error:
            # A refused checkpoint, weights that cannot be downloaded.
            exit_if_user_error(error)
            raise
    score_thr = args.score_thr
    if score_thr == 'auto':
        from tood.deployment.score_thresholds import thresholds_for_classes
        classes = model.dataset_meta['classes']
        try:
            score_thr = thresholds_for_classes(args.checkpoint, classes)
        except ConfigError as error:
            sys.exit(str(error))
        print('score thresholds: ' + ', '.join(
            f'{name} {thr:.3f}' for name, thr in zip(classes, score_thr)))
    detect = None
    if args.tile is not None:
        tile = tile_size(args.tile) or default_input_shape(model.cfg)
        if not tile:
            sys.exit('--tile: the test pipeline has no fixed input size: '
                     'give the tile size (--tile 640 or --tile 512 768)')
        print(f'tiles of {tile[0]}x{tile[-1]}, overlap {args.tile_overlap}'
              + ('' if args.no_whole else ', plus the whole image'))

        def in_tiles(chunk):
            return [inference_tiled(model, path, tile, args.tile_overlap,
                                    not args.no_whole, args.batch_size)
                    for path in chunk]
        detect = in_tiles
    try:
        written = save_predictions(model, paths, args.out_dir, score_thr,
                                   args.batch_size, detect=detect)
    except (OutputConflictError, ConfigError) as error:
        # ConfigError: e.g. an image of another size than a static export.
        sys.exit(str(error))
    print(f'{len(written)} images with their detections written to '
          f'{args.out_dir}')


if __name__ == '__main__':
    main()
