"""Python API for inference with trained detectors."""
from .inference import (LoadImageFromArray, build_test_pipeline,
                        default_input_shape, detections_to_dict, find_images,
                        inference_detector, init_detector, save_predictions)
from .tiling import inference_tiled, tile_windows

__all__ = [
    'LoadImageFromArray', 'build_test_pipeline', 'default_input_shape',
    'detections_to_dict', 'find_images', 'inference_detector',
    'inference_tiled', 'init_detector', 'save_predictions', 'tile_windows'
]
