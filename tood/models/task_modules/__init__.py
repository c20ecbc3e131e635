"""What the dense heads share beneath their layers: the priors, the
assigners, Task-aligned Learning's criterion and the post-processing."""
from .assigners import AssignResult, ATSSAssigner, TaskAlignedAssigner
from .head_checks import check_dense_head_args, check_num_levels
from .postprocess import detections_from_levels
from .priors import (Priors, decode_level, grid_points, levels_to_priors,
                     make_priors, square_anchors)
from .task_aligned_criterion import TaskAlignedCriterion, build_at

__all__ = ['AssignResult', 'ATSSAssigner', 'Priors', 'TaskAlignedAssigner',
           'TaskAlignedCriterion', 'build_at', 'check_dense_head_args',
           'check_num_levels', 'decode_level', 'detections_from_levels',
           'grid_points', 'levels_to_priors', 'make_priors', 'square_anchors']
