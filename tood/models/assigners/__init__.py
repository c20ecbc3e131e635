from importlib.util import find_spec

from .assign_result import AssignResult
from .atss_assigner import ATSSAssigner

__all__ = ['AssignResult', 'ATSSAssigner']

# The task-aligned assigner is being written in parallel; import it once it
# exists.
if find_spec(__name__ + '.task_aligned_assigner') is not None:
    from .task_aligned_assigner import TaskAlignedAssigner  # noqa: F401
    __all__.append('TaskAlignedAssigner')
