"""Importing this package registers every model component."""
from . import (assigners, backbones, data_preprocessors, detectors, heads,
               layers, losses, necks)  # noqa: F401
