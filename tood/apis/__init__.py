"""Python API for inference with trained detectors."""
from .inference import (LoadImageFromArray, build_test_pipeline,
                        detections_to_dict, find_images, inference_detector,
                        init_detector, save_predictions)

__all__ = [
    'LoadImageFromArray', 'build_test_pipeline', 'detections_to_dict',
    'find_images', 'inference_detector', 'init_detector', 'save_predictions'
]
