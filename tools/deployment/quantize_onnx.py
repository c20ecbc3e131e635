"""Quantize an exported detector to INT8, with its accuracy as the gate.

    python tools/deployment/quantize_onnx.py CONFIG MODEL.onnx OUT.onnx
    python tools/deployment/quantize_onnx.py CONFIG MODEL.onnx OUT.onnx \\
        --calib 64 --max-drop 0.005 --runtime openvino

1. Calibration: ``--calib`` images spread over the config's training split
   go through its test pipeline and the fp32 model (progress shown).
2. Quantization (``tood.deployment.quantize``): the feature path up to
   the last convolutions in int8, QDQ format; the offset sampling, the
   box decoding and the post-processing stay float.
3. The gate: the fp32 and the INT8 model are evaluated on the config's
   validation split with its own metrics (``tools/test.py``'s runner, by
   ``--runtime``), and the drop of the first metric (COCO's bbox_mAP, or
   VOC's mAP) is compared with ``--max-drop``. Within it, ``OUT.onnx`` is
   written, with both results in its metadata. Beyond it, nothing is
   written and the exit status is 1; ``--write-anyway`` writes it all the
   same, with a warning, and still exits with 1.
"""
import argparse
import copy
import os
import os.path as osp
import sys
import tempfile
from typing import Dict

from mmengine.config import Config, DictAction

from tood.deployment import (RUNTIMES, ExportError, OnnxDetector,
                             use_exported_model)
from tood.deployment.quantize import (DEFAULT_CALIBRATION_IMAGES,
                                      CalibrationImages, calibration_infos,
                                      quantize_onnx, update_record)
from tood.engine import (dataset_missing_message, load_config,
                         missing_dataset_files, run_tool)
from tood.errors import ConfigError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='INT8 post-training quantization of an exported '
        'detector, refused when the validation metric drops')
    parser.add_argument('config', help='the config the model was exported '
                        'from (its training split calibrates, its '
                        'validation split and metrics judge)')
    parser.add_argument('model', help='the fp32 .onnx export')
    parser.add_argument('out', help='the INT8 .onnx file to write')
    parser.add_argument(
        '--calib',
        type=int,
        default=DEFAULT_CALIBRATION_IMAGES,
        help='calibration images, spread over the training split '
        f'(default {DEFAULT_CALIBRATION_IMAGES})')
    parser.add_argument(
        '--max-drop',
        type=float,
        default=0.01,
        help='largest drop of the first validation metric (e.g. '
        'coco/bbox_mAP) accepted (default 0.01)')
    parser.add_argument(
        '--write-anyway',
        action='store_true',
        help='write OUT.onnx even when the drop exceeds --max-drop (with a '
        'warning, and exit status 1)')
    parser.add_argument(
        '--runtime',
        choices=RUNTIMES,
        default='onnxruntime',
        help='what runs both models for the validation')
    parser.add_argument(
        '--work-dir',
        help='where the validation logs go; defaults to '
        'work_dirs/<config name>')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. the datasets\' data_root')
    args = parser.parse_args(argv)
    if args.calib < 1:
        parser.error('--calib must be at least 1')
    if args.max_drop < 0:
        parser.error('--max-drop must not be negative')
    if not args.out.endswith('.onnx'):
        parser.error('OUT must end with .onnx')
    if osp.abspath(args.out) == osp.abspath(args.model):
        parser.error('OUT must not be the fp32 model itself')
    return args


def validate(cfg: Config, model: str, runtime: str) -> Dict[str, float]:
    """The metrics of an exported model on the config's validation split,
    through the runner as ``tools/test.py`` runs it."""
    cfg = copy.deepcopy(cfg)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.test_evaluator = cfg.val_evaluator
    cfg.default_hooks.pop('visualization', None)
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
        dict(type='TestProgressBarHook')
    ]
    use_exported_model(cfg, model, runtime)
    return run_tool(cfg, 'test', lambda runner: runner.test())


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, 'none', args.work_dir)
    if not cfg.get('val_dataloader') or not cfg.get('val_evaluator'):
        sys.exit(f'{args.config} has no val_dataloader / val_evaluator: the '
                 'INT8 model is judged on the validation split')
    missing = missing_dataset_files(cfg, ['train', 'val'])
    if missing:
        sys.exit(dataset_missing_message(cfg, missing))
    try:
        detector = OnnxDetector(args.model, cfg)
    except ExportError as error:
        sys.exit(str(error))

    from mmengine.utils import ProgressBar

    from tood.registry import DATASETS
    from tood.utils import register_all_modules
    register_all_modules()
    infos = calibration_infos(
        DATASETS.build(cfg.train_dataloader.dataset), args.calib)
    print(f'calibrating on {len(infos)} training images')
    bar = ProgressBar(len(infos))
    images = CalibrationImages(detector, infos, lambda done, total:
                               bar.update())
    folder = osp.dirname(osp.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    handle, partial = tempfile.mkstemp(suffix='.onnx', dir=folder)
    os.close(handle)
    try:
        quantize_onnx(args.model, partial, images)
        print()
        before = validate(cfg, args.model, args.runtime)
        after = validate(cfg, partial, args.runtime)
        metric = next(iter(before))
        drop = before[metric] - after[metric]
        update_record(
            partial,
            dict(metric=metric, fp32=before[metric], int8=after[metric],
                 max_drop=args.max_drop, validated_with=args.runtime))
        print(f'{metric} on the validation split: fp32 {before[metric]:.4f}'
              f', int8 {after[metric]:.4f} (drop {drop:.4f}, '
              f'--max-drop {args.max_drop})')
        for key in before:
            if key != metric and isinstance(before[key], float) and \
                    key in after:
                print(f'  {key}: fp32 {before[key]:.4f}, int8 '
                      f'{after[key]:.4f}')
        if drop <= args.max_drop:
            os.replace(partial, args.out)
            print(f'INT8 model written to {args.out}')
            return
        if args.write_anyway:
            os.replace(partial, args.out)
            print(f'WARNING: {metric} drops by {drop:.4f}, more than '
                  f'--max-drop {args.max_drop}; written to {args.out} '
                  'because of --write-anyway. Check it before using it.',
                  file=sys.stderr)
            sys.exit(1)
        sys.exit(f'{metric} drops by {drop:.4f} (fp32 {before[metric]:.4f}'
                 f', int8 {after[metric]:.4f}), more than --max-drop '
                 f'{args.max_drop}: {args.out} not written. Try more '
                 'calibration images (--calib), accept the drop '
                 '(--max-drop, --write-anyway), or stay with fp32.')
    except ConfigError as error:
        sys.exit(str(error))
    finally:
        if osp.exists(partial):
            os.remove(partial)


if __name__ == '__main__':
    main()
