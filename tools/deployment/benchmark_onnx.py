"""Exported runtimes against PyTorch eager, the whole detector at batch 1.

    OMP_NUM_THREADS=2 python tools/deployment/benchmark_onnx.py \\
        configs/tood/tood_r18_fpn_11e_shapes.py CKPT --repeats 30 \\
        --score-thr 0.05 0 --image data/shapes/val/000000.png
    OMP_NUM_THREADS=2 python tools/deployment/benchmark_onnx.py \\
        configs/tood/tood_r50_fpn_1x_coco.py none --shape 800 1333 \\
        --repeats 4

Every runtime starts from the same resized uint8 BGR image and ends with
the detections in original-image pixels: PyTorch runs ``model.test_step``
(data preprocessor, network, post-processing), each exported runtime the
graph exported with NMS, which holds the same steps. Reading and resizing
the image stays outside the timed region. The runtimes are timed in turns
(``tood.analysis.benchmarking``: each turn two untimed runs, then one
timed, the order reversed every other turn), each with ``--threads``
threads; their detections are first compared with PyTorch's.

``none`` for the checkpoint uses weights initialised from seed 0, whose
scores sit near the 0.01 prior, so at the default threshold almost
nothing reaches NMS; ``--score-thr 0`` measures the other extreme,
``nms_pre`` candidates per level all going into NMS.

A runtime is one entry of ``RUNTIMES``: ``OnnxDetector``'s runtime, its
device and the file it runs (the fp32 export, or with ``--int8`` the same
quantized to INT8 by ``tood.deployment.quantize``); one this installation
lacks (openvino, a CUDA or TensorRT provider) is reported as skipped.
TensorRT needs a CUDA machine with onnxruntime-gpu built with it.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import tempfile
import time
from typing import Dict, Optional, Tuple

import cv2
import numpy as np
import torch
from mmengine.config import DictAction

from tood.analysis.benchmarking import (format_table, machine_info,
                                        summarise, time_in_turns)
from tood.apis import default_input_shape, init_detector
from tood.deployment import (Detections, ExportError, OnnxDetector,
                             compare_detections, export_onnx)
from tood.structures import DetDataSample


# name: (runtime, device: None for --device, the file: fp32 or --int8's)
RUNTIMES = {
    'ONNX Runtime': ('onnxruntime', None, 'fp32'),
    'ONNX Runtime TensorRT': ('onnxruntime', 'tensorrt', 'fp32'),
    'OpenVINO': ('openvino', None, 'fp32'),
    'ONNX Runtime INT8': ('onnxruntime', None, 'int8'),
    'OpenVINO INT8': ('openvino', None, 'int8'),
}
TIMES = {'ms (median)': 'median_ms', 'min ms': 'min_ms'}  # columns


def input_image(path: Optional[str], shape: Tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 BGR of exactly ``shape``: a photograph resized to it
    (as the detector sees it after its pipeline's resize), else a smooth
    random pattern."""
    h, w = shape
    if path:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f'cannot read {path}')
    else:
        image = np.random.default_rng(0).integers(
            0, 256, (h // 16 + 1, w // 16 + 1, 3), np.uint8)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def measure(args: argparse.Namespace, score_thr: Optional[float],
            work_dir: str) -> Dict:
    """Every runtime at one score threshold; the numbers as a dict."""
    options = dict(args.cfg_options or {})
    if score_thr is not None:
        options['model.test_cfg.score_thr'] = score_thr
    model = init_detector(
        args.config, None if args.checkpoint.lower() == 'none' else
        args.checkpoint, args.device, options)
    shape = tuple(args.shape or default_input_shape(model.cfg) or
                  (800, 1333))
    image = input_image(args.image, shape)
    files = dict(fp32=osp.join(work_dir, f'{score_thr}.onnx'))
    start = time.perf_counter()
    export_onnx(model, files['fp32'], shape, dataset_meta=model.dataset_meta)
    export_s = time.perf_counter() - start
    if args.int8:
        # Calibrated on the timed image alone: speed does not depend on
        # the ranges (tools/deployment/quantize_onnx.py gates accuracy).
        from tood.deployment.quantize import CalibrationImages, quantize_onnx
        path, files['int8'] = (osp.join(work_dir, name)
                               for name in ('calib.png', 'int8.onnx'))
        cv2.imwrite(path, image)
        quantize_onnx(files['fp32'], files['int8'], CalibrationImages(
            OnnxDetector(files['fp32'], model.cfg), [path]))
    torch.set_num_threads(args.threads)
    # The image as if it had been resized from a larger original.
    scale, ori = (0.75, 0.75), (shape[0] / 0.75, shape[1] / 0.75)
    data = dict(inputs=[torch.from_numpy(image).permute(2, 0, 1)],
                data_samples=[DetDataSample(metainfo=dict(
                    img_shape=shape, ori_shape=ori, scale_factor=scale))])

    def pytorch() -> Detections:
        with torch.no_grad():
            return Detections.from_instances(
                model.test_step(data)[0].pred_instances)

    runs, skipped = dict(PyTorch=pytorch), {}
    for name, (runtime, device, precision) in RUNTIMES.items():
        if precision not in files:
            continue
        try:  # a runtime or provider this installation lacks is skipped
            detect = OnnxDetector(files[precision], model.cfg,
                                  device=device or args.device,
                                  num_threads=args.threads,
                                  runtime=runtime).detect
            runs[name] = (lambda d=detect: Detections(*d(image, scale, ori)))
        except ExportError as error:
            skipped[name] = str(error)
    reference, result = pytorch(), {}
    same = {name: compare_detections(reference, run()).ok
            for name, run in runs.items()}
    measured = time_in_turns(runs, args.repeats)
    for name, m in measured.items():
        # Per turn: PyTorch's time over this runtime's.
        ratios = [t / o for t, o in zip(measured['PyTorch'].times, m.times)]
        result[name] = dict(
            summarise(m), same_detections=same[name],
            speedup_median=statistics.median(ratios),
            speedup_min=min(ratios), speedup_max=max(ratios))
    return dict(config=args.config, checkpoint=args.checkpoint,
                input=f'{shape[0]}x{shape[1]}',
                score_thr=model.bbox_head.test_cfg.score_thr,
                detections=len(reference), threads=args.threads,
                repeats=args.repeats, export_s=export_s, runtimes=result,
                skipped=skipped)


def report(r: Dict) -> str:
    return (f'{osp.basename(r["config"])} {r["input"]} score_thr='
            f'{r["score_thr"]}: {r["detections"]} detections by PyTorch, '
            f'export {r["export_s"]:.1f} s\n' + format_table(
                {'runtime': 'name', **TIMES, 'speed-up': 'speedup_median',
                 'per turn from': 'speedup_min', 'to': 'speedup_max',
                 'same detections': 'same_detections'},
                [dict(t, name=n) for n, t in r['runtimes'].items()]) +
            ''.join(f'\n{n}: skipped, {why}'
                    for n, why in r['skipped'].items()))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Time exported runtimes against PyTorch eager, pre- '
        'and post-processing included')
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="or 'none' (seed-0 weights)")
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="input size (default: the config's test size)")
    parser.add_argument('--score-thr', type=float, nargs='+', default=[None],
                        help='model.test_cfg.score_thr values to export')
    parser.add_argument('--repeats', type=int, default=10, help='turns')
    parser.add_argument('--threads', type=int, default=2,
                        help='threads of each runtime')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument('--image', help='a photograph to resize to the '
                        'input size (default: a random pattern)')
    parser.add_argument('--int8', action='store_true', help='also time the '
                        'export quantized to INT8 (QDQ) in both runtimes')
    parser.add_argument('--out', help='a json file for the results')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    machine = dict(machine_info(torch.device(args.device)),
                   onnxruntime=__import__('onnxruntime').__version__,
                   OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS'))
    print(json.dumps(machine))
    results, lines = [], []
    with tempfile.TemporaryDirectory() as work_dir:
        for thr in args.score_thr:
            results.append(measure(args, thr, work_dir))
            lines.append(report(results[-1]))
            print(lines[-1], flush=True)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(machine=machine, results=results,
                           table='\n\n'.join(lines)), f, indent=1)


if __name__ == '__main__':
    main()
