"""Importing this package registers every model component."""
from . import (backbones, data_preprocessors, detectors, heads, layers,
               losses, necks, task_modules)  # noqa: F401
