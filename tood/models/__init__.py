"""Importing this package registers every model component."""
from . import (backbones, data_preprocessors, detectors,  # noqa: F401
               heads, layers, losses, necks, task_modules)
