"""Deployment: ONNX export of whole detectors (pre- and post-processing
included), INT8 quantization, and inference with ONNX Runtime or OpenVINO
(docs/deployment.md)."""
from .onnx_export import (DEFAULT_OPSET, DEFORM_CONV_OPSET, FORMAT, MIN_OPSET,
                          ExportableDetector, ExportError,
                          custom_translations,
                          deformable_modules, export_config, export_onnx,
                          resolve_opset)
from .exported_model import ExportedDetector, use_exported_model
from .onnx_check import OnnxFileInfo, check_onnx_file
from .onnx_runtime import OnnxDetector, test_cfg_differences
from .runtimes import RUNTIMES, open_runtime
from .verify import (BOX_TOL, SCORE_TOL, Comparison, Detections,
                     compare_detections, verify_files, verify_onnx)

__all__ = [
    'BOX_TOL', 'DEFAULT_OPSET', 'DEFORM_CONV_OPSET', 'FORMAT', 'MIN_OPSET',
    'RUNTIMES', 'SCORE_TOL', 'Comparison', 'Detections', 'ExportError',
    'ExportableDetector', 'ExportedDetector', 'OnnxDetector', 'OnnxFileInfo',
    'check_onnx_file', 'compare_detections', 'custom_translations',
    'deformable_modules', 'export_config', 'export_onnx', 'open_runtime',
    'resolve_opset', 'test_cfg_differences', 'use_exported_model',
    'verify_files', 'verify_onnx'
]
