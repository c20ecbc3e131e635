from .assign_result import AssignResult, resolve_claims
from .atss_assigner import ATSSAssigner
from .task_aligned_assigner import TaskAlignedAssigner

__all__ = ['AssignResult', 'ATSSAssigner', 'TaskAlignedAssigner',
           'resolve_claims']
