"""The runtimes that run an exported graph: ONNX Runtime and OpenVINO.

Both read the same ``.onnx`` file (fp32, or the INT8 one of
``tood.deployment.quantize``), after ``check_onnx_file`` has refused
external data; both take the graph's inputs as NumPy arrays and return
its outputs in the graph's order. ``OnnxDetector`` holds one of them and
does everything else (pipeline, metadata, post-processing) the same way
for both.

    runtime = open_runtime('openvino', 'tood.onnx', device='cpu')
    outputs = runtime.run({'image': ..., 'scale_factor': ...,
                           'ori_shape': ...})
"""
from typing import Collection, Dict, List, Optional, Union

import numpy as np

from .onnx_export import ExportError

# Names accepted by ``open_runtime`` (and the tools' ``--runtime``).
RUNTIMES = ('onnxruntime', 'openvino')
# Operators of our exports that a runtime cannot read: OpenVINO 2026.4's
# ONNX frontend has no DeformConv (opset 19), which the DCNv2 configs
# export to.
UNSUPPORTED_OPS = {'openvino': ('DeformConv', )}


def _ort_providers(device: str) -> List[str]:
    """ONNX Runtime execution providers for a device name ('cpu', 'cuda',
    'cuda:N', 'tensorrt' (with CUDA for what TensorRT does not take) or
    'auto')."""
    import onnxruntime as ort
    available = ort.get_available_providers()
    cpu, cuda = ['CPUExecutionProvider'], ['CUDAExecutionProvider']
    if device == 'cpu':
        return cpu
    if device == 'auto':
        return (cuda if cuda[0] in available else []) + cpu
    if device == 'tensorrt':
        wanted = ['TensorrtExecutionProvider'] + cuda
    elif device.startswith('cuda'):
        wanted = cuda
    else:
        raise ExportError("device must be 'cpu', 'cuda[:N]', 'tensorrt' or "
                          f"'auto', got {device!r}")
    missing = [p for p in wanted if p not in available]
    if missing:
        raise ExportError(
            f'device {device!r} asked for, but this onnxruntime has no '
            f'{", ".join(missing)} (it has {", ".join(available)}); install '
            'onnxruntime-gpu (with TensorRT for tensorrt) or use --device '
            'cpu')
    return wanted + cpu


class OnnxRuntimeSession:
    """An ``onnxruntime.InferenceSession`` on the file.

    Args:
        onnx_file: a checked export.
        device: 'cpu', 'cuda[:N]' or 'auto' (CUDA when this onnxruntime
            has it).
        num_threads: intra-op threads (None: ONNX Runtime's default, one
            per core).
    """
    name = 'onnxruntime'

    def __init__(self, onnx_file: str, device: str = 'cpu',
                 num_threads: Optional[int] = None):
        import onnxruntime as ort
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            onnx_file, options, providers=_ort_providers(device))

    def run(self, feed: Dict[str, np.ndarray]) -> List[np.ndarray]:
        return self.session.run(None, feed)


class OpenVinoSession:
    """The file read by OpenVINO's ONNX frontend and compiled for its CPU
    plugin.

    The precision is set to float32 explicitly: on a CPU with bfloat16
    instructions (AMX, AVX-512 BF16; this project's machine has the
    latter) the plugin otherwise runs float layers in bfloat16 by default,
    which is not the exported model any more. Quantized (QDQ) layers of an
    INT8 file still run in int8: the hint concerns float layers only.

    Args:
        onnx_file: a checked export.
        device: 'cpu' or 'auto' (OpenVINO's CPU plugin either way; its GPU
            plugin is for Intel GPUs and untested here).
        num_threads: inference threads (None: OpenVINO's default, one per
            physical core).
    """
    name = 'openvino'

    def __init__(self, onnx_file: str, device: str = 'cpu',
                 num_threads: Optional[int] = None):
        try:
            import openvino as ov
        except ImportError:
            raise ExportError(
                "the openvino runtime needs the openvino package: pip "
                "install -e '.[openvino]' (or pip install openvino)"
            ) from None
        if device not in ('cpu', 'auto'):
            raise ExportError(
                f"the openvino runtime runs on the CPU here; device "
                f"{device!r} asked for: use --device cpu, or the "
                'onnxruntime runtime for CUDA')
        config = {
            'INFERENCE_PRECISION_HINT': 'f32',
            'PERFORMANCE_HINT': 'LATENCY',
        }
        if num_threads:
            config['INFERENCE_NUM_THREADS'] = num_threads
        core = ov.Core()
        self.compiled = core.compile_model(
            core.read_model(onnx_file), 'CPU', config)
        self.request = self.compiled.create_infer_request()
        self._outputs = list(self.compiled.outputs)

    def run(self, feed: Dict[str, np.ndarray]) -> List[np.ndarray]:
        # infer() copies the outputs out of the request's buffers.
        result = self.request.infer(feed)
        return [np.asarray(result[output]) for output in self._outputs]


def open_runtime(
        name: str,
        onnx_file: str,
        device: str = 'cpu',
        num_threads: Optional[int] = None,
        op_types: Collection[str] = ()
) -> Union[OnnxRuntimeSession, OpenVinoSession]:
    """The runtime ``name`` (one of ``RUNTIMES``) on a checked file.

    Args:
        op_types: the file's operator types (``check_onnx_file``), to
            refuse one the runtime cannot read before it reads the file.
    Raises:
        ExportError: an unknown name, openvino not installed, or an
            operator the runtime lacks (named, with the runtime to use).
    """
    lacking = sorted(set(UNSUPPORTED_OPS.get(name, ())) & set(op_types))
    if lacking:
        raise ExportError(
            f'{onnx_file} has {", ".join(lacking)} operators, which the '
            f'{name} runtime cannot read (deformable convolutions export '
            'to DeformConv); run it with --runtime onnxruntime')
    if name == 'onnxruntime':
        return OnnxRuntimeSession(onnx_file, device, num_threads)
    if name == 'openvino':
        return OpenVinoSession(onnx_file, device, num_threads)
    raise ExportError(f'unknown runtime {name!r}: choose one of '
                      f'{", ".join(RUNTIMES)}')
