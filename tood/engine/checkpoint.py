"""Loading mmengine checkpoints safely on torch >= 2.6.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: it refuses
every pickled global outside an allow-list. mmengine 0.10.7 calls
``torch.load`` without ``weights_only``, and its checkpoints hold more than
tensors: the message hub stores ``HistoryBuffer`` objects (numpy arrays of
float64/int64 values, numpy scalars such as the ETA) and every buffer pickles
its statistics methods as ``getattr(HistoryBuffer, 'min')``. So ``--resume``
and ``load_from`` fail out of the box.

The fix here keeps ``weights_only=True`` and allow-lists exactly the globals
found in checkpoints written by our runner (found by saving one and reading
``torch.serialization.get_unsafe_globals_in_checkpoint``). ``getattr`` itself
is not allow-listed: that would let a file reach any attribute of any
allowed object. Instead the name ``builtins.getattr`` is bound to a function
that only hands out HistoryBuffer's own statistics methods.

A file that needs anything else (for instance one crafted to run code while
unpickling) fails with :class:`UnsafeCheckpointError` naming the file.
"""
import os.path as osp
import pickle
from typing import Callable, Optional, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds objects outside the allow-list; nothing was run."""


# The statistics HistoryBuffer registers for itself on construction.
_HISTORY_BUFFER_METHODS = ('min', 'max', 'mean', 'current')


def _history_buffer_method(owner: type, name: str) -> Callable:
    """Stands in for ``getattr`` while unpickling.

    HistoryBuffer's ``__getstate__`` stores ``HistoryBuffer.min`` and friends;
    pickle protocol 2 writes a nested name like that as ``getattr(cls, name)``.
    Only those lookups are answered.
    """
    if owner is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not allowed while loading a '
        'checkpoint')


def _numpy_reconstruct() -> Callable:
    # numpy 2 moved the pickled helpers from numpy.core to numpy._core.
    core = getattr(np, '_core', None) or np.core
    return core.multiarray._reconstruct


def _numpy_scalar() -> Callable:
    core = getattr(np, '_core', None) or np.core
    return core.multiarray.scalar


def safe_globals() -> list:
    """Everything beyond torch's defaults that our checkpoints contain."""
    return [
        HistoryBuffer,
        (_history_buffer_method, 'builtins.getattr'),
        # HistoryBuffer's log and count histories are float64/int64 arrays.
        _numpy_reconstruct(),
        np.ndarray,
        np.dtype,
        type(np.dtype(np.float64)),
        type(np.dtype(np.int64)),
        # numpy scalars such as the ETA in the message hub's runtime info.
        _numpy_scalar(),
    ]


def load_from_local(filename: str,
                    map_location: Optional[Union[str, Callable]] = None):
    """mmengine's local-file loader, with a clear error for unsafe files.

    The name matters: mmengine logs ``Loads checkpoint by <name[10:]>
    backend``, so this still says ``local``.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's own message ends by suggesting weights_only=False: keep
        # only the part that says what was refused.
        detail = str(error).split('WeightsUnpickler error:')[-1].strip()
        detail = detail.split('\n')[0].strip() or str(error)
        raise UnsafeCheckpointError(
            f'Refusing to load checkpoint {filename!r}: it contains objects '
            'that are not plain tensors, numbers or mmengine log buffers, and '
            'unpickling them could run code. Only load files you trust; a '
            'checkpoint written by this toolbox never needs this. '
            f'Details: {detail}') from error


def register_safe_globals() -> None:
    """Allow-list our checkpoint contents and route local files through
    :func:`load_from_local`. Safe to call more than once."""
    torch.serialization.add_safe_globals(safe_globals())
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local, force=True)
