"""What the dense heads share beneath their layers: the priors, the
assigners, Task-aligned Learning's criterion and the post-processing."""
from .assigners import AssignResult, ATSSAssigner, TaskAlignedAssigner
from .postprocess import detections_from_levels
from .priors import (Priors, decode_level, grid_points, levels_to_priors,
                     make_priors, square_anchors)
from .task_aligned_criterion import TaskAlignedCriterion

__all__ = ['AssignResult', 'ATSSAssigner', 'Priors', 'TaskAlignedAssigner',
           'TaskAlignedCriterion', 'decode_level', 'detections_from_levels',
           'grid_points', 'levels_to_priors', 'make_priors', 'square_anchors']
