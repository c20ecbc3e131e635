"""What the dense heads share beneath their layers and training methods:
the priors, the assigners and the post-processing."""
from .alignment import alignment_per_gt, attach_alignment
from .assigners import AssignResult, ATSSAssigner, TaskAlignedAssigner
from .postprocess import (PaddedDetections, TestCfg, class_nms,
                          dense_predictions, detections_from_levels,
                          select_detections)
from .priors import (Priors, decode_level, grid_points, levels_to_priors,
                     make_priors, square_anchors)

__all__ = ['AssignResult', 'ATSSAssigner', 'alignment_per_gt',
           'attach_alignment', 'PaddedDetections', 'Priors',
           'TaskAlignedAssigner', 'TestCfg', 'class_nms', 'decode_level',
           'dense_predictions', 'detections_from_levels', 'grid_points',
           'levels_to_priors', 'make_priors', 'select_detections',
           'square_anchors']
