"""Evaluate a checkpoint, or an exported model, on a config's test set.

    python tools/test.py configs/tood/tood_r50_fpn_1x_coco.py ckpt.pth
    bash tools/dist_test.sh configs/tood/tood_r50_fpn_1x_coco.py ckpt.pth 8
    python tools/test.py configs/tood/tood_r50_fpn_1x_coco.py tood.onnx
    python tools/test.py CONFIG tood_int8.onnx --runtime openvino

``--out results.json`` writes the detections in COCO's result format
(plain data, what tools/analysis/confusion_matrix.py reads), ``--out
preds.pkl`` dumps the raw predictions as a pickle; ``--show-dir DIR`` draws
them.
``--tile [SIZE]`` detects in overlapping tiles of the original images
(docs/deployment.md). ``--compile`` compiles the network
(docs/training.md). A checkpoint written
with an EMA hook holds the averaged weights, which are what is evaluated.

An ``.onnx`` file (``tools/deployment/export_onnx.py``, or its INT8 version
from ``quantize_onnx.py``) goes through the same dataloader, evaluator,
``--out`` and ``--show-dir``, run by ONNX Runtime or, with ``--runtime
openvino``, by OpenVINO; each image at its own size, in one process
(docs/deployment.md).
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.dist import get_dist_info
from mmengine.runner import Runner

from tood.apis import add_tile_arguments, tile_size
from tood.deployment import RUNTIMES, use_exported_model
from tood.engine import load_config, run_tool
from tood.errors import ConfigError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint',
        help='checkpoint file, or an exported .onnx model')
    parser.add_argument(
        '--runtime',
        choices=RUNTIMES,
        default='onnxruntime',
        help='what runs an .onnx model (docs/deployment.md)')
    parser.add_argument(
        '--work-dir',
        help='where the log goes; defaults to work_dirs/<config name>')
    parser.add_argument(
        '--out',
        help='.json: write the detections in COCO result format (what '
        'tools/analysis/confusion_matrix.py reads); .pkl: dump the raw '
        'predictions')
    parser.add_argument(
        '--show-dir', help='write the images with predicted boxes here')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile the network (backbone, neck, head); settings '
        'from the config\'s compile dict if it has one (docs/training.md)')
    add_tile_arguments(parser)
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. test_dataloader.batch_size=4; '
        'keys missing from the config are added with a warning')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.runtime != 'onnxruntime' and \
            not is_exported(args.checkpoint):
        parser.error('--runtime applies to exported .onnx models')
    if args.out is not None and not args.out.endswith(
            ('.pkl', '.pickle', '.json')):
        parser.error('--out must end with .pkl, .pickle or .json')
    return args


def _coco_metrics(cfg: Config) -> list:
    evaluators = cfg.test_evaluator
    if isinstance(evaluators, dict):
        evaluators = [evaluators]
    return [e for e in evaluators if e.get('type') == 'CocoMetric']


def build_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config, args.cfg_options, args.launcher,
                      args.work_dir)
    cfg.load_from = args.checkpoint
    if args.compile:
        # A dict of torch.compile settings in the config is kept.
        cfg.compile = cfg.get('compile') or True
    if is_exported(args.checkpoint):
        use_exported_model(cfg, args.checkpoint, args.runtime)
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
        dict(type='TestProgressBarHook')
    ]
    if args.tile is not None:
        cfg.test_cfg = dict(type='TiledTestLoop',
                            tile=tile_size(args.tile),
                            overlap=args.tile_overlap, whole=not args.no_whole)

    if args.show_dir is not None:
        if 'visualization' not in cfg.default_hooks:
            cfg.default_hooks.visualization = dict(
                type='DetVisualizationHook')
        cfg.default_hooks.visualization.update(
            draw=True, test_out_dir=args.show_dir)

    if args.out is not None:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    if args.out is not None and args.out.endswith(('.pkl', '.pickle')):
        if isinstance(cfg.test_evaluator, dict):
            cfg.test_evaluator = [cfg.test_evaluator]
        cfg.test_evaluator.append(
            dict(type='DumpResults', out_file_path=args.out))
    elif args.out is not None:
        metrics = _coco_metrics(cfg)
        if not metrics:
            raise ValueError('--out *.json needs a CocoMetric in '
                             'test_evaluator')
        # CocoMetric writes '<prefix>.bbox.json'; main() renames it.
        for metric in metrics:
            metric.outfile_prefix = osp.splitext(args.out)[0]
    return cfg


def test_on_main_process(runner: Runner) -> bool:
    """Run the test loop; whether this is the main process (asked before
    the process group is shut down)."""
    runner.test()
    return get_dist_info()[0] == 0


def is_exported(path: str) -> bool:
    """An exported model rather than a checkpoint, by its extension."""
    return path.lower().endswith('.onnx')


def main(argv=None) -> None:
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        sys.exit(f'Checkpoint {args.checkpoint} does not exist.')
    try:
        cfg = build_config(args)
    except ConfigError as error:
        sys.exit(str(error))
    is_main_process = run_tool(cfg, 'test', test_on_main_process)

    if args.out is not None and args.out.endswith('.json') and \
            is_main_process:
        os.replace(osp.splitext(args.out)[0] + '.bbox.json', args.out)
        print(f'COCO-format detections written to {args.out}')


if __name__ == '__main__':
    main()
