"""Deployment: ONNX export of whole detectors (pre- and post-processing
included) and inference with ONNX Runtime (docs/deployment.md)."""
from .onnx_export import (DEFAULT_OPSET, DEFORM_CONV_OPSET, FORMAT, MIN_OPSET,
                          ExportableDetector, ExportError,
                          custom_translations,
                          deformable_modules, export_config, export_onnx,
                          resolve_opset)
from .onnx_check import check_onnx_file
from .onnx_runtime import OnnxDetector, test_cfg_differences
from .verify import (BOX_TOL, SCORE_TOL, Comparison, Detections,
                     compare_detections, verify_files, verify_onnx)

__all__ = [
    'BOX_TOL', 'DEFAULT_OPSET', 'DEFORM_CONV_OPSET', 'FORMAT', 'MIN_OPSET',
    'SCORE_TOL', 'Comparison', 'Detections', 'ExportError',
    'ExportableDetector', 'OnnxDetector', 'check_onnx_file',
    'compare_detections', 'custom_translations',
    'deformable_modules', 'export_config', 'export_onnx', 'resolve_opset',
    'test_cfg_differences', 'verify_files', 'verify_onnx'
]
