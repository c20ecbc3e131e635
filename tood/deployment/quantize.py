"""INT8 post-training static quantization of an exported detector with
ONNX Runtime's quantization tools.

What is quantized: the feature path, i.e. every node whose output
reaches a convolution (backbone, neck, the T-Head's tower, its layer
attention and task decomposition) and every convolution, of the op types
in ``QUANTIZED_OPS`` (convolutions, the residual and top-down additions,
the group norm's affine step, concatenation, pooling, upsampling). QDQ
format: ``QuantizeLinear`` / ``DequantizeLinear`` pairs around float ops,
which ONNX Runtime and OpenVINO fuse into int8 kernels; between two
quantized ops they pass the tensor on in uint8.

* weights: int8, symmetric, one scale per output channel;
* activations: uint8, asymmetric, one scale and zero point per tensor,
  from the minimum and maximum each tensor reaches on calibration images
  (images of the training split through the test pipeline, run by the
  float model).

Everything after the last convolution of each branch stays float32: the
sigmoids and the probability map, the T-Head's offset sampling
(``GridSample``, eq. 6: its sampling positions are sub-pixel), the box
decoding, and the whole post-processing with NMS; so do the normalisation
of the image inside the graph and the group norm's statistics
(``InstanceNormalization``). The file keeps the contract and the metadata
of the fp32 export, plus ``tood.quantization`` (how it was quantized, and
the metric before and after when ``tools/deployment/quantize_onnx.py``
wrote it), so every runtime loads it as any export.

Shapes: an image (H, W, 3) uint8 BGR after the test pipeline's resize.
"""
import json
import os
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .onnx_export import ExportError
from .onnx_runtime import OnnxDetector

# The op types quantized on the feature path (module docstring), each with
# an int8 kernel in ONNX Runtime's CPU provider and in OpenVINO; all
# others stay float32.
QUANTIZED_OPS = ('Conv', 'Add', 'Mul', 'Concat', 'MaxPool', 'Resize', 'Relu',
                 'Reshape')
# Calibration images when the user gives no number: enough for stable
# min/max ranges on the models measured (docs/deployment.md).
DEFAULT_CALIBRATION_IMAGES = 32
# Metadata key of the quantization record.
QUANTIZATION_KEY = 'tood.quantization'


def feature_path(onnx_file: str) -> List[str]:
    """Names of the nodes of ``QUANTIZED_OPS`` types that are convolutions
    or whose output reaches one. An ONNX graph lists its nodes in
    topological order, so one pass from the end finds them."""
    import onnx
    graph = onnx.load(onnx_file, load_external_data=False).graph
    readers: Dict[str, List[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    reaches = set()  # names of the nodes whose output reaches a Conv
    for node in reversed(graph.node):
        if any(reader.op_type == 'Conv' or reader.name in reaches
               for name in node.output for reader in readers.get(name, ())):
            reaches.add(node.name)
    return [node.name for node in graph.node
            if node.op_type in QUANTIZED_OPS and
            (node.op_type == 'Conv' or node.name in reaches)]


def spread_indices(total: int, num: int) -> List[int]:
    """``num`` indices spread evenly over ``range(total)`` (all of them
    when ``num >= total``), so that calibration sees the whole split rather
    than its first files, which are often alike."""
    if num >= total:
        return list(range(total))
    return sorted({int(i) for i in np.linspace(0, total - 1, num).round()})


def calibration_infos(dataset, num: int) -> List[dict]:
    """The data infos (``img_path`` ...) of ``num`` images spread over a
    built dataset, inside any wrappers (``ClassBalancedDataset``,
    ``RepeatDataset``, ``ConcatDataset``), each image once."""
    from tood.datasets.wrappers import pipeline_datasets
    infos = []
    for inner in pipeline_datasets(dataset):
        if hasattr(inner, 'full_init'):
            inner.full_init()
        infos += [inner.get_data_info(i) for i in range(len(inner))]
    return [infos[i] for i in spread_indices(len(infos), num)]


class CalibrationImages:
    """ONNX Runtime's ``CalibrationDataReader`` over images: each goes
    through the detector's test pipeline (``tood.apis``'s, without
    annotations) to the graph's inputs (``OnnxDetector.feed``).

    Args:
        detector: the fp32 export (its pipeline and input checks).
        infos: data infos with ``img_path`` (``calibration_infos``), or
            image paths.
        progress: called after each image with (done, total).
    """

    def __init__(self,
                 detector: OnnxDetector,
                 infos: Sequence,
                 progress: Optional[Callable[[int, int], None]] = None):
        from tood.apis.inference import build_test_pipeline
        self.detector = detector
        self.infos = [
            dict(img_path=info) if isinstance(info, str) else dict(info)
            for info in infos
        ]
        self.pipeline = build_test_pipeline(detector.cfg, from_array=False)
        self.progress = progress
        self.position = 0

    def __len__(self) -> int:
        return len(self.infos)

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self.position >= len(self.infos):
            return None
        # A copy: the transforms add the image and its sizes to the dict.
        packed = self.pipeline(dict(self.infos[self.position]))
        self.position += 1
        feed = self.detector.feed(*OnnxDetector.sample_inputs(
            packed['inputs'], packed['data_samples']))
        if self.progress is not None:
            self.progress(self.position, len(self.infos))
        return feed

    def rewind(self) -> None:
        self.position = 0


def quantize_onnx(onnx_file: str, out_file: str,
                  calibration: CalibrationImages) -> dict:
    """Quantize an exported detector (module docstring) to ``out_file``.

    Args:
        onnx_file: the fp32 export.
        out_file: the INT8 model to write, weights inside the file.
        calibration: the calibration images.
    Returns:
        The ``tood.quantization`` record written into the file's metadata
        (beside the fp32 export's own metadata).
    """
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    # The calibrator records the range of every tensor read or written by
    # an op of these types, post-processing included, where masked scores
    # are -inf; their (unused) scale divides by infinity. Numpy's warning
    # for it is silenced and the scales actually written are checked.
    with np.errstate(invalid='ignore', divide='ignore'):
        quantize_static(
            onnx_file,
            out_file,
            calibration,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_quantize=feature_path(onnx_file),
            per_channel=True,
            # uint8 activations with int8 weights: the fast path of x86
            # CPUs with VNNI (ONNX Runtime's own advice for them);
            # reduce_range is for CPUs without VNNI, whose int16 sums
            # could saturate.
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # Weights inside the file: check_onnx_file refuses external
            # data.
            use_external_data_format=False)
    try:
        check_scales(out_file)
    except ExportError:
        os.remove(out_file)
        raise
    record = dict(
        format='QDQ',
        ops=list(QUANTIZED_OPS),
        nodes='the feature path: convolutions and the nodes whose output '
        'reaches one',
        weights='int8, symmetric, per output channel',
        activations='uint8, asymmetric, per tensor, min/max calibration',
        calibration_images=len(calibration))
    metadata = _metadata(onnx_file)
    metadata[QUANTIZATION_KEY] = json.dumps(record)
    _set_metadata(out_file, metadata)
    return record


def check_scales(onnx_file: str) -> None:
    """Every quantization scale of a QDQ model is finite and positive.

    Raises:
        ExportError: naming the first tensor whose scale is not (its
            INT8 values would be meaningless).
    """
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(onnx_file, load_external_data=False).graph
    constants = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type in ('QuantizeLinear', 'DequantizeLinear'):
            if node.input[1] not in constants:
                continue
            scale = numpy_helper.to_array(constants[node.input[1]])
            if not (np.isfinite(scale).all() and (scale > 0).all()):
                raise ExportError(
                    f'quantizing {node.input[0]} gave the scale {scale}: '
                    'its range on the calibration images gives no usable '
                    'scale')


def update_record(onnx_file: str, entries: dict) -> dict:
    """Add ``entries`` (e.g. the metric before and after) to a quantized
    file's ``tood.quantization`` record; returns the record."""
    metadata = _metadata(onnx_file)
    record = {**json.loads(metadata[QUANTIZATION_KEY]), **entries}
    metadata[QUANTIZATION_KEY] = json.dumps(record)
    _set_metadata(onnx_file, metadata)
    return record


def _metadata(onnx_file: str) -> Dict[str, str]:
    import onnx
    model = onnx.load(onnx_file, load_external_data=False)
    return {entry.key: entry.value for entry in model.metadata_props}


def _set_metadata(onnx_file: str, metadata: Dict[str, str]) -> None:
    """Replace a file's metadata, rewriting it atomically."""
    import onnx
    model = onnx.load(onnx_file, load_external_data=False)
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    partial = onnx_file + '.partial'
    onnx.save_model(model, partial)
    os.replace(partial, onnx_file)
