"""Run an exported detector with ONNX Runtime or OpenVINO.

``OnnxDetector`` stands in for a PyTorch detector wherever ``tood.apis``
takes one (``inference_detector``, ``save_predictions``): it has ``cfg``
(the test pipeline), ``dataset_meta`` (class names, palette) and
``test_step``. Images therefore go through exactly the same loading and
resizing code as with PyTorch, and the results come back as
``DetDataSample`` with ``pred_instances`` in original-image pixels.

    from tood.apis import inference_detector
    from tood.deployment import OnnxDetector
    detector = OnnxDetector('tood.onnx')
    result = inference_detector(detector, 'demo.jpg')
    detector = OnnxDetector('tood.onnx', runtime='openvino')

The runtime (``tood.deployment.runtimes``) only runs the graph; the
pipeline, the metadata and the post-processing of ``--no-nms`` exports
are this class's, the same for every runtime.
"""
import copy
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.structures import InstanceData

from tood.models.task_modules import TestCfg, select_detections
from tood.structures import DetDataSample

from .onnx_check import check_onnx_file
from .onnx_export import ExportError
from .runtimes import open_runtime


def _tuples(value):
    """JSON lists back to the tuples mmcv's transforms expect (``Resize``
    refuses a list scale)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def test_cfg_differences(exported: TestCfg, wanted: TestCfg) -> List[str]:
    """The post-processing settings in which ``wanted`` (a config's
    ``model.test_cfg``) differs from those baked into a graph."""
    return [f'{key}: exported {a}, config {b}'
            for key, a, b in zip(TestCfg._fields, exported, wanted) if a != b]


class OnnxDetector:
    """An exported detector (``tools/deployment/export_onnx.py``, or its
    INT8 version from ``tools/deployment/quantize_onnx.py``) run by ONNX
    Runtime or OpenVINO.

    Args:
        onnx_file: the exported model.
        config: a config file or ``Config`` whose test pipeline and class
            names to use; None uses those stored in the model at export.
            Its ``model.test_cfg`` must match the exported one when the
            graph contains the post-processing.
        cfg_options: overrides for ``config``.
        device: 'cpu', 'cuda[:N]' or 'auto' ('cpu' or 'auto' for
            OpenVINO).
        num_threads: the runtime's threads (None: its default, one per
            core).
        runtime: 'onnxruntime' or 'openvino' (``runtimes.RUNTIMES``).

    Attributes:
        runtime: the runtime running the graph (``runtimes``).
        cfg: a ``Config`` with the test pipeline (for ``tood.apis``).
        dataset_meta: ``classes`` and ``palette``.
        with_nms: whether the graph returns detections (else per-prior
            outputs that ``select_detections`` finishes here).
        test_cfg: the post-processing settings (``TestCfg``).
        input_hw: (H, W) a static export takes, None where it is free.
        quantization: how the file was quantized and its accuracy before
            and after (``tood.deployment.quantize``); None for an fp32
            export.
    """

    def __init__(self,
                 onnx_file: str,
                 config: Union[str, os.PathLike, Config, None] = None,
                 cfg_options: Optional[dict] = None,
                 device: str = 'cpu',
                 num_threads: Optional[int] = None,
                 runtime: str = 'onnxruntime'):
        # Before a runtime opens the file: it would read external data.
        meta, self.input_hw, op_types = check_onnx_file(onnx_file)
        self.quantization = (json.loads(meta['tood.quantization'])
                             if 'tood.quantization' in meta else None)
        self.with_nms = json.loads(meta['tood.with_nms'])
        self.test_cfg = TestCfg.from_config(json.loads(meta['tood.test_cfg']))
        self.num_classes = json.loads(meta['tood.num_classes'])
        classes = json.loads(meta.get('tood.classes', '[]'))
        palette = json.loads(meta.get('tood.palette', '[]'))
        pipeline = json.loads(meta.get('tood.test_pipeline', '[]'))

        # The test pipeline's transforms are built from the registries.
        from tood.utils import register_all_modules
        register_all_modules()
        if config is not None:
            cfg = (copy.deepcopy(config) if isinstance(config, Config) else
                   Config.fromfile(str(config)))
            if cfg_options:
                cfg.merge_from_dict(cfg_options)
            self._check_config(cfg, onnx_file)
            if not self.with_nms:
                # Post-processing runs here: the config's settings apply.
                self.test_cfg = TestCfg.from_config(cfg.model.get('test_cfg'))
            self.cfg = cfg
        else:
            if not pipeline:
                raise ExportError(
                    f'{onnx_file} stores no test pipeline: pass the config '
                    'it was exported from')
            self.cfg = Config(
                dict(
                    test_dataloader=dict(
                        dataset=dict(pipeline=list(_tuples(pipeline))))))
        if len(classes) != self.num_classes:
            classes = [f'class_{i}' for i in range(self.num_classes)]
        if len(palette) < len(classes):
            from tood.visualization import make_palette
            palette = make_palette(len(classes))
        self.dataset_meta = dict(
            classes=tuple(classes), palette=[tuple(c) for c in palette])
        # Last: compiling takes a while, the checks above do not.
        self.runtime = open_runtime(runtime, onnx_file, device, num_threads,
                                    op_types)

    def _check_config(self, cfg: Config, onnx_file: str) -> None:
        """Refuse a config that does not describe the exported model."""
        num_classes = cfg.model.bbox_head.get('num_classes')
        if num_classes != self.num_classes:
            raise ExportError(
                f'{onnx_file} has {self.num_classes} classes, the config '
                f'{num_classes}: pass the config it was exported from')
        if self.with_nms:
            diff = test_cfg_differences(
                self.test_cfg, TestCfg.from_config(cfg.model.get('test_cfg')))
            if diff:
                raise ExportError(
                    f'{onnx_file} has the post-processing built in and the '
                    f'config asks for other settings ({"; ".join(diff)}); '
                    're-export with these settings (export_onnx.py '
                    '--cfg-options) or export with --no-nms')

    # ------------------------------------------------------------------ #
    def feed(self, image: np.ndarray, scale_factor: Sequence[float],
             ori_shape: Sequence[int]) -> Dict[str, np.ndarray]:
        """The graph's inputs for one image, batch of one.

        Args:
            image: (H, W, 3) uint8 BGR, after the test pipeline's resize.
            scale_factor: (w_scale, h_scale), resized over original size.
            ori_shape: (height, width) of the original image.
        Raises:
            ValueError: not a uint8 BGR image; ``ExportError`` (a
                ValueError) for another size than a static export takes.
        """
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError('the exported model takes (H, W, 3) uint8 BGR '
                             f'images, got {image.dtype} {image.shape}')
        h, w = image.shape[:2]
        if any(fixed is not None and fixed != size
               for fixed, size in zip(self.input_hw, (h, w))):
            # ExportError (a ValueError): tools print it without traceback.
            raise ExportError(
                f'the model was exported for {self.input_hw[0]}x'
                f'{self.input_hw[1]} inputs and this image is {h}x{w} after '
                'the test pipeline: export with --dynamic (or --shape '
                f'{h} {w})')
        return {
            'image': np.ascontiguousarray(image[None]),
            'scale_factor': np.asarray([scale_factor], np.float32),
            'ori_shape': np.asarray([ori_shape[:2]], np.float32),
        }

    def run(self, image: np.ndarray, scale_factor: Sequence[float],
            ori_shape: Sequence[int]) -> List[np.ndarray]:
        """The graph's raw outputs for one image (arguments as ``feed``),
        in the graph's order (module docstring of
        ``tood.deployment.onnx_export``), batch of one."""
        return self.runtime.run(self.feed(image, scale_factor, ori_shape))

    @staticmethod
    def sample_inputs(inputs: torch.Tensor, sample: DetDataSample
                      ) -> Tuple[np.ndarray, Sequence[float], Sequence[int]]:
        """One image of a collated test-pipeline batch as ``feed`` takes it:
        (3, H, W) uint8 tensor and its data sample to image, scale factor
        (1, 1 when the pipeline does not resize) and original shape."""
        meta = sample.metainfo
        return (inputs.permute(1, 2, 0).cpu().numpy(),
                meta.get('scale_factor', (1.0, 1.0)), meta['ori_shape'])

    def detect(self, image: np.ndarray, scale_factor: Sequence[float],
               ori_shape: Sequence[int]
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detections of one image (arguments as ``run``).

        Returns:
            boxes (M, 4) float32 original-image pixels, scores (M,),
            labels (M,) int64, best first.
        """
        outputs = self.run(image, scale_factor, ori_shape)
        if self.with_nms:
            num, boxes, scores, labels = outputs
            n = int(num[0])
            return boxes[0, :n], scores[0, :n], labels[0, :n]
        # Per-prior outputs: the selection and NMS the NMS graph traces.
        scores, boxes, priors_per_level, *factors = map(torch.from_numpy,
                                                        outputs)
        found = select_detections(scores, boxes, priors_per_level.tolist(),
                                  self.test_cfg, *factors).instances()[0]
        return (found.bboxes.numpy(), found.scores.numpy(),
                found.labels.numpy())

    def test_step(self, data: Dict) -> list:
        """``BaseModel.test_step`` for a collated batch of the test
        pipeline (``inputs``: (3, H, W) uint8 tensors; ``data_samples``
        with ``ori_shape`` and, after a resize, ``scale_factor``). Images
        run one by one, each at its own size: a PyTorch batch would pad
        them to a common size."""
        samples = data['data_samples']
        for inputs, sample in zip(data['inputs'], samples):
            boxes, scores, labels = self.detect(
                *self.sample_inputs(inputs, sample))
            sample.pred_instances = InstanceData(
                bboxes=torch.from_numpy(np.array(boxes, np.float32)),
                scores=torch.from_numpy(np.array(scores, np.float32)),
                labels=torch.from_numpy(np.array(labels, np.int64)))
        return samples
