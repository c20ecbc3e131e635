"""Python API for inference with trained detectors."""
from .inference import (LoadImageFromArray, build_test_pipeline,
                        default_input_shape, detections_to_dict, find_images,
                        inference_detector, init_detector, save_predictions)
from .tiling import (add_tile_arguments, inference_tiled, tile_size,
                     tile_windows)

__all__ = [
    'LoadImageFromArray', 'add_tile_arguments', 'build_test_pipeline',
    'default_input_shape', 'detections_to_dict', 'find_images',
    'inference_detector', 'inference_tiled', 'init_detector',
    'save_predictions', 'tile_size', 'tile_windows'
]
