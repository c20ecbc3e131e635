"""The training methods of the dense heads, one criterion each, on one
shared step (``targets``): priors, padded GTs, assignment, targets.

A head holds its criterion; the criterion turns the head's per-level
outputs into the losses of a batch (``forward``) and into what inference
ranks (``predictions``)."""
from .atss import ATSSCriterion
from .gfl import GFLCriterion
from .targets import Targets, assign_targets, batch_priors, boxes_in_pixels
from .task_aligned import TaskAlignedCriterion

__all__ = ['ATSSCriterion', 'GFLCriterion', 'TaskAlignedCriterion',
           'Targets', 'assign_targets', 'batch_priors', 'boxes_in_pixels']
