"""ONNX Runtime against PyTorch eager on the CPU, the whole detector.

    OMP_NUM_THREADS=2 python tools/deployment/benchmark_onnx.py \\
        configs/tood/tood_r18_fpn_11e_shapes.py none --repeats 20
    OMP_NUM_THREADS=2 python tools/deployment/benchmark_onnx.py \\
        configs/tood/tood_r50_fpn_1x_coco.py none --shape 800 1333 \\
        --repeats 4 --score-thr 0.05 0

Both runtimes start from the same resized uint8 BGR image (B=1) and end
with the detections in original-image pixels: PyTorch runs the data
preprocessor, the network and the post-processing (``model.test_step``),
ONNX Runtime the graph exported with ``--nms``, which holds the same
steps. Reading and resizing the image is the same code for both runtimes
and stays outside the timed region. Turns alternate (PyTorch, ONNX, ONNX, PyTorch,
...) so that a machine whose speed drifts affects both alike; each gets
``--threads`` threads.

``none`` for the checkpoint uses weights initialised from seed 0. Their
scores sit near the 0.01 prior, so at the default threshold almost nothing
reaches NMS; ``--score-thr 0`` measures the other extreme, ``nms_pre``
candidates per level all going into NMS.
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np
import torch


def _cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def _input_image(path: Optional[str], shape) -> np.ndarray:
    """(H, W, 3) uint8 BGR of exactly ``shape``: a photograph resized to it
    (the images the detector sees after its pipeline's resize), else a
    smooth random pattern."""
    import cv2
    h, w = shape
    if path:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f'cannot read {path}')
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), np.uint8)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)


def measure(config: str,
            checkpoint: Optional[str],
            shape,
            score_thr: Optional[float],
            repeats: int,
            warmup: int,
            threads: int,
            image_path: Optional[str],
            work_dir: str,
            cfg_options: Optional[dict] = None) -> Dict:
    """One configuration measured; returns the numbers as a dict."""
    import onnxruntime as ort

    from tood.apis import default_input_shape, init_detector
    from tood.deployment import (Detections, compare_detections,
                                 export_onnx)
    from tood.structures import DetDataSample

    options = dict(cfg_options or {})
    if score_thr is not None:
        options['model.test_cfg.score_thr'] = score_thr
    model = init_detector(config, checkpoint, 'cpu', options)
    shape = tuple(shape or default_input_shape(model.cfg) or (800, 1333))
    image = _input_image(image_path, shape)
    h, w = shape
    onnx_file = osp.join(
        work_dir, f'{osp.splitext(osp.basename(config))[0]}_{h}x{w}_'
        f'thr{model.bbox_head.test_cfg.score_thr}.onnx')
    start = time.perf_counter()
    export_onnx(
        model, onnx_file, shape=shape, dataset_meta=model.dataset_meta)
    export_s = time.perf_counter() - start

    torch.set_num_threads(threads)
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = threads
    session_options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        onnx_file, session_options, providers=['CPUExecutionProvider'])
    # The image as if it had been resized from a larger original.
    scale = (0.75, 0.75)
    ori = (h / 0.75, w / 0.75)
    feed = dict(
        image=image[None],
        scale_factor=np.asarray([scale], np.float32),
        ori_shape=np.asarray([ori], np.float32))

    def run_torch() -> Detections:
        data = dict(
            inputs=[torch.from_numpy(image).permute(2, 0, 1)],
            data_samples=[
                DetDataSample(
                    metainfo=dict(
                        img_shape=shape, ori_shape=ori, scale_factor=scale))
            ])
        with torch.no_grad():
            result = model.test_step(data)[0]
        return Detections.from_instances(result.pred_instances)

    def run_onnx() -> Detections:
        num, boxes, scores, labels = session.run(None, feed)
        n = int(num[0])
        return Detections(boxes[0, :n], scores[0, :n], labels[0, :n])

    check = compare_detections(run_torch(), run_onnx())
    times: Dict[str, List[float]] = dict(torch=[], onnx=[])
    for i in range(warmup + repeats):
        # Alternate who goes first, so that neither always follows the
        # other's cache and frequency state.
        order = (('torch', run_torch), ('onnx', run_onnx))
        for name, fn in (order if i % 2 == 0 else order[::-1]):
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    ratios = [t / o for t, o in zip(times['torch'], times['onnx'])]
    return dict(
        config=config,
        checkpoint=checkpoint or 'none (seed 0)',
        input=f'{h}x{w}',
        score_thr=model.bbox_head.test_cfg.score_thr,
        detections=check.num_ref,
        same_detections=check.ok,
        threads=threads,
        repeats=repeats,
        export_s=round(export_s, 1),
        torch_ms_median=round(1000 * statistics.median(times['torch']), 1),
        torch_ms_min=round(1000 * min(times['torch']), 1),
        onnx_ms_median=round(1000 * statistics.median(times['onnx']), 1),
        onnx_ms_min=round(1000 * min(times['onnx']), 1),
        speedup_median=round(statistics.median(ratios), 2),
        speedup_min=round(min(ratios), 2),
        speedup_max=round(max(ratios), 2))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Time ONNX Runtime against PyTorch eager on the CPU, '
        'pre- and post-processing included')
    parser.add_argument('config', help='config file of the model')
    parser.add_argument(
        'checkpoint', help="checkpoint file, or 'none' (seed-0 weights)")
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help="input size (default: the config's test size)")
    parser.add_argument(
        '--score-thr',
        type=float,
        nargs='+',
        default=[None],
        help='model.test_cfg.score_thr values to measure at, one '
        'export each (default: the config\'s)')
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--threads', type=int, default=2, help='threads for each runtime')
    parser.add_argument(
        '--image', help='a photograph to resize to the input size '
        '(default: a random pattern)')
    parser.add_argument(
        '--work-dir', help='where the exported models go (default: a '
        'temporary folder)')
    parser.add_argument('--out', help='append the results to this json')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    print(f'CPU: {_cpu_name()}, {os.cpu_count()} cores visible; '
          f'torch {torch.__version__}, '
          f'onnxruntime {__import__("onnxruntime").__version__}; '
          f'OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS")}')
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = args.work_dir or tmp
        os.makedirs(work_dir, exist_ok=True)
        results = []
        for thr in args.score_thr:
            result = measure(args.config, checkpoint, args.shape, thr,
                             args.repeats, args.warmup, args.threads,
                             args.image, work_dir)
            results.append(result)
            print(
                f'{osp.basename(result["config"])} {result["input"]} '
                f'score_thr={result["score_thr"]}: PyTorch '
                f'{result["torch_ms_median"]} ms (min '
                f'{result["torch_ms_min"]}), ONNX Runtime '
                f'{result["onnx_ms_median"]} ms (min '
                f'{result["onnx_ms_min"]}), speedup '
                f'{result["speedup_median"]}x (per-turn range '
                f'{result["speedup_min"]}-{result["speedup_max"]}); '
                f'{result["detections"]} detections, same in both: '
                f'{result["same_detections"]}; export '
                f'{result["export_s"]} s', flush=True)
    if args.out:
        previous = []
        if osp.exists(args.out):
            with open(args.out) as f:
                previous = json.load(f)
        with open(args.out, 'w') as f:
            json.dump(previous + results, f, indent=1)


if __name__ == '__main__':
    main()
