from .assign_result import AssignResult
from .atss_assigner import ATSSAssigner
from .task_aligned_assigner import TaskAlignedAssigner

__all__ = ['AssignResult', 'ATSSAssigner', 'TaskAlignedAssigner']
