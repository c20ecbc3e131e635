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
unpickling) fails with :class:`UnsafeCheckpointError` naming the file. The
same holds for downloaded checkpoints (``http(s)://``, ``torchvision://``,
``open-mmlab://``): mmengine fetches them with torch's
``load_state_dict_from_url``, which unpickles with ``weights_only=False``;
:func:`register_safe_globals` swaps in :func:`safe_load_url`.

Saving is made atomic here too: mmengine writes checkpoints (and its other
files) through the local file backend's ``put``, which opens the target and
writes into it, so a run killed while saving leaves a truncated file under
the final name. Importing this module replaces that backend with
:class:`AtomicLocalBackend`, which writes a temporary file in the same
folder and renames it over the target.
"""
import os
import os.path as osp
import pickle
import uuid
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from mmengine.runner import checkpoint as mmengine_checkpoint

from tood.errors import UnsafeCheckpointError


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


# numpy 2 moved the helpers that pickles name from numpy.core to
# numpy._core; checkpoints written under numpy 1 still use the old path.
_NUMPY_CORE = getattr(np, '_core', None) or np.core


def safe_globals() -> list:
    """Everything beyond torch's defaults that our checkpoints contain."""
    reconstruct = _NUMPY_CORE.multiarray._reconstruct
    scalar = _NUMPY_CORE.multiarray.scalar
    return [
        HistoryBuffer,
        (_history_buffer_method, 'builtins.getattr'),
        # HistoryBuffer's log and count histories are float64/int64 arrays.
        reconstruct,
        (reconstruct, 'numpy.core.multiarray._reconstruct'),
        np.ndarray,
        np.dtype,
        type(np.dtype(np.float64)),
        type(np.dtype(np.int64)),
        # numpy scalars such as the ETA in the message hub's runtime info.
        scalar,
        (scalar, 'numpy.core.multiarray.scalar'),
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
        raise _refusal(filename, error) from error


def safe_load_url(url: str,
                  model_dir: Optional[str] = None,
                  map_location: Optional[Union[str, Callable]] = None,
                  progress: bool = True,
                  check_hash: bool = False,
                  file_name: Optional[str] = None,
                  **kwargs) -> dict:
    """``torch.hub.load_state_dict_from_url`` with ``weights_only=True``.

    torch's function defaults to ``weights_only=False``, and mmengine's
    loaders for ``http(s)://``, ``torchvision://``, ``open-mmlab://`` and
    ``mmcls://`` all download through it, so a downloaded checkpoint could
    run code while it is unpickled. :func:`register_safe_globals` puts this
    function in their place.
    """
    try:
        return torch.hub.load_state_dict_from_url(
            url,
            model_dir=model_dir,
            map_location=map_location,
            progress=progress,
            check_hash=check_hash,
            file_name=file_name,
            weights_only=True)
    except pickle.UnpicklingError as error:
        raise _refusal(url, error) from error


def _refusal(source: str,
             error: pickle.UnpicklingError) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f'Refusing to load checkpoint {source!r}: it contains objects '
        'that are not plain tensors, numbers or mmengine log buffers, and '
        'unpickling them could run code. Only load files you trust; a '
        'checkpoint written by this toolbox never needs this. '
        f'Details: {_refusal_reason(str(error))}')


def _refusal_reason(message: str) -> str:
    """What torch's weights_only error says was refused.

    Its paragraphs about ``weights_only=False`` and the documentation are
    dropped: the advice to turn the check off is not ours to give.
    """
    paragraphs = (p.strip() for p in message.split('\n\n'))
    reasons = [
        p.replace('WeightsUnpickler error:', '').strip() for p in paragraphs
        if p and 'weights_only' not in p
        and not p.startswith('Check the documentation')
    ]
    return ' '.join(reasons) or message


def register_safe_globals() -> None:
    """Allow-list our checkpoint contents, route local files through
    :func:`load_from_local` and downloads through :func:`safe_load_url`.
    Safe to call more than once."""
    torch.serialization.add_safe_globals(safe_globals())
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local, force=True)
    # mmengine's URL loaders call the name bound in their module.
    mmengine_checkpoint.load_url = safe_load_url


def atomic_write(path: Union[str, Path], data: Union[bytes, str]) -> None:
    """Write ``data`` to ``path`` so that ``path`` never holds a partial
    file: write a temporary file next to it, flush it to disk, then rename
    it over ``path`` (atomic on POSIX and Windows within one file system).

    A process killed before the rename leaves the previous ``path``
    untouched (and, on SIGKILL, a hidden ``.<name>.*.tmp`` file).
    """
    path = os.fspath(path)
    folder, name = osp.split(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode('utf-8')
    # Not tempfile.mkstemp: its files are private (0600); open() applies
    # the umask as a plain write would.
    tmp = osp.join(folder, f'.{name}.{os.getpid()}.{uuid.uuid4().hex}.tmp')
    try:
        with open(tmp, 'xb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Any failure, including KeyboardInterrupt, keeps the old file.
        if osp.exists(tmp):
            os.remove(tmp)
        raise


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put`` and ``put_text``.

    Registered in place of ``LocalBackend`` when this module is imported,
    so ``Runner.save_checkpoint`` and everything else mmengine writes
    through ``mmengine.fileio`` goes through :func:`atomic_write`.
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write(filepath, obj)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        atomic_write(filepath, obj.encode(encoding))


register_backend('local', AtomicLocalBackend, force=True, prefixes='')
