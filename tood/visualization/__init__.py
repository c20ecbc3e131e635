"""Pictures of detections and of training runs.

* :mod:`.boxes`: boxes with class names and scores drawn on images (the
  one routine every tool and hook uses);
* :mod:`.curves`: mmengine's scalar logs read back and plotted as training
  curves (``TrainingReportHook`` and ``tools/analysis/plot_logs.py``);
* :mod:`.palette`: class colours.

This package imports nothing else of tood's, so every layer (datasets,
engine, APIs, tools) can use it.
"""
from .boxes import (GT_COLOR, default_palette, draw_detections,
                    draw_instances, imwrite, original_image)
from .curves import (DEFAULT_KEYS, ScalarLog, find_scalar_files,
                     load_work_dir, plot_curves, read_scalars)
from .palette import make_palette

__all__ = [
    'DEFAULT_KEYS', 'GT_COLOR', 'ScalarLog', 'default_palette',
    'draw_detections', 'draw_instances', 'find_scalar_files', 'imwrite',
    'load_work_dir', 'make_palette', 'original_image', 'plot_curves',
    'read_scalars'
]
