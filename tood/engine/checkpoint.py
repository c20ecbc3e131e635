"""Loading checkpoints safely and saving them atomically.

Nothing here happens at import: an entry point (``tools/*.py``,
``tood.apis.init_detector``) calls :func:`setup_checkpoint_io` once, and
``tood``'s ``CheckpointHook`` asks for the atomic backend itself. Importing
the library leaves mmengine's loaders, file backends and torch's
allow-list as they were.

**Loading.** Since torch 2.6, ``torch.load`` defaults to
``weights_only=True``: it refuses every pickled global outside an
allow-list. mmengine 0.10.7 calls ``torch.load`` without ``weights_only``,
and its checkpoints hold more than tensors: the message hub stores
``HistoryBuffer`` objects (numpy arrays of float64/int64 values, numpy
scalars such as the ETA) and every buffer pickles its statistics methods as
``getattr(HistoryBuffer, 'min')``. So ``--resume`` and ``load_from`` fail
out of the box. Downloads are worse off: mmengine fetches ``http(s)://``,
``torchvision://``, ``open-mmlab://`` and ``mmcls://`` weights with
torch's ``load_state_dict_from_url``, which unpickles with
``weights_only=False``, so a downloaded file could run code; its
``s3://`` and ``petrel://`` loader calls ``torch.load`` without
``weights_only`` (unrestricted where ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``
is set), its ``pavi://`` loader likewise.

:func:`setup_checkpoint_io` registers our own loaders for all of these
schemes (``pavi://`` is refused) with mmengine's
``CheckpointLoader.register_scheme`` (its extension point). They keep
``weights_only=True`` and allow exactly the globals found in checkpoints
written by our runner (found by saving one and reading
``torch.serialization.get_unsafe_globals_in_checkpoint``), through torch's
``safe_globals`` context manager, so the allow-list holds only while one of
our loaders reads a file. ``getattr`` itself is not allow-listed: that
would let a file reach any attribute of any allowed object. Instead the
name ``builtins.getattr`` is bound to a function that only hands out
HistoryBuffer's own statistics methods. A file that needs anything else
(for instance one crafted to run code while unpickling) fails with
:class:`UnsafeCheckpointError` naming the file. :func:`load_pickle` reads
plain pickles (``tools/test.py --out preds.pkl``) with the same
allow-list. A download that fails (no
network on a cluster node, say) fails with :class:`ModelDownloadError`
naming the file, where it was looked for, and the ways on.

**Saving.** mmengine writes checkpoints through a file backend's ``put``,
and its local backend opens the target and writes into it, so a run killed
while saving leaves a truncated file under the final name.
:class:`AtomicLocalBackend` writes a temporary file in the same folder and
renames it over the target. It is registered under its own name
(:data:`ATOMIC_BACKEND`, never over mmengine's ``local``) by
:func:`atomic_backend_args`, which ``CheckpointHook`` passes to mmengine as
``backend_args``.
"""
import _codecs
import io
import os
import os.path as osp
import pickle
import sys
import uuid
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, Union
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.fileio import (LocalBackend, get_file_backend,
                             register_backend)
from mmengine.fileio.backends import backends as registered_backends
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from mmengine.runner.checkpoint import (get_deprecated_model_names,
                                        get_external_models, get_mmcls_models,
                                        get_torchvision_models)

from tood.errors import ModelDownloadError, UnsafeCheckpointError

MapLocation = Optional[Union[str, torch.device, Callable]]

# The name AtomicLocalBackend is registered under in mmengine's backends.
ATOMIC_BACKEND = 'atomic_local'

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
    """Everything beyond torch's defaults that our checkpoints contain, in
    the form ``torch.serialization.safe_globals`` takes."""
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


@contextmanager
def allow_listed(source: str, what: str = 'checkpoint') -> Iterator[None]:
    """Within this block ``torch.load(..., weights_only=True)`` accepts our
    checkpoints' globals; a refusal becomes :class:`UnsafeCheckpointError`
    naming ``source`` (a ``what``: 'checkpoint', 'pickle').

    Only the entries the caller has not allowed already are added (torch's
    context manager removes what it added on exit, so an entry the caller
    had allowed globally stays allowed).
    """
    present = torch.serialization.get_safe_globals()
    missing = [item for item in safe_globals() if item not in present]
    with torch.serialization.safe_globals(missing):
        try:
            yield
        except pickle.UnpicklingError as error:
            if isinstance(error, UnsafeCheckpointError):
                raise
            raise _refusal(source, error, what) from error


def load_from_local(filename: str, map_location: MapLocation = None):
    """Read a checkpoint file with torch's ``weights_only`` loader and our
    allow-list.

    The name matters: mmengine logs ``Loads checkpoint by <name[10:]>
    backend``, so this still says ``local``.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file holds objects outside the
            allow-list (nothing in it was run).
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    with allow_listed(filename):
        return torch.load(
            filename, map_location=map_location, weights_only=True)


class _AllowListUnpickler(pickle.Unpickler):
    """Plain pickle restricted to tensors, containers and the checkpoint
    allow-list (:func:`safe_globals`).

    A tensor pickles as ``_rebuild_tensor_v2`` of a storage, and the
    storage as ``torch.storage._load_from_bytes`` of a nested
    ``torch.save`` payload, which torch reads with ``weights_only=False``;
    here that payload is read with ``weights_only=True`` and the
    allow-list instead.
    """

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source
        self.allowed = {
            'collections.OrderedDict': OrderedDict,
            # Protocol 2 writes bytes as _codecs.encode(str, 'latin1').
            '_codecs.encode': _codecs.encode,
            'torch._utils._rebuild_tensor_v2':
            torch._utils._rebuild_tensor_v2,
            'torch.storage._load_from_bytes': self._storage,
            'torch.Size': torch.Size,
        }
        for item in safe_globals():
            obj, name = item if isinstance(item, tuple) else (
                item, f'{item.__module__}.{item.__qualname__}')
            self.allowed[name] = obj

    def _storage(self, data: bytes):
        with allow_listed(self.source, 'pickle'):
            return torch.load(io.BytesIO(data), weights_only=True)

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[f'{module}.{name}']
        except KeyError:
            raise _refusal(
                self.source,
                pickle.UnpicklingError(f'Unsupported global: {module}.{name}'),
                'pickle') from None


def load_pickle(path: str):
    """A pickle file (``tools/test.py --out preds.pkl``, mmengine's
    ``dump``) read with the checkpoint allow-list: tensors, numpy arrays,
    numbers, strings and containers load; anything else is refused by name
    before it is built.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file holds other objects (nothing in it
            was run).
        pickle.UnpicklingError, EOFError: not a pickle, or cut short.
    """
    with open(path, 'rb') as f:
        return _AllowListUnpickler(f, path).load()


def hub_cache_file(url: str) -> str:
    """Where torch's hub keeps the download of ``url``:
    ``torch.hub.get_dir()/checkpoints/<file name>``."""
    return osp.join(torch.hub.get_dir(), 'checkpoints',
                    osp.basename(urlparse(url).path))


def _download_failure(source: str, url: str, cached: str,
                      error: BaseException) -> ModelDownloadError:
    name = osp.basename(cached)
    fetched = source if source == url else f'{source} ({url})'
    return ModelDownloadError(
        f'Could not download the weights {fetched}: {error}. They were '
        f'looked for first in the torch hub cache, at {cached}, which '
        'does not exist. Two ways on: download that file on a machine '
        'with internet access and copy it there, or anywhere and give its '
        'path, e.g. --cfg-options model.backbone.init_cfg.checkpoint='
        f'/path/to/{name}; or train the backbone from scratch with '
        '--cfg-options model.backbone.init_cfg=None.')


def _fetch_once(url: str, source: str, map_location: MapLocation) -> dict:
    """Download ``url`` into torch's hub cache unless it is there, then
    read it with the allow-list."""
    cached = hub_cache_file(url)
    if not osp.isfile(cached):
        os.makedirs(osp.dirname(cached), exist_ok=True)
        sys.stderr.write(f'Downloading: "{url}" to {cached}\n')
        try:
            # Looked up at call time, so that tests can stand in for it.
            torch.hub.download_url_to_file(
                url, cached, progress=os.isatty(2))
        except OSError as error:
            # URLError (no route, no DNS), HTTPError, timeouts and
            # connection resets are all OSErrors.
            raise _download_failure(source, url, cached, error) from error
    with allow_listed(url):
        # Finds the cached file, and unpacks the legacy zip format of some
        # old torchvision weights, which torch.load alone does not.
        return torch.hub.load_state_dict_from_url(
            url,
            model_dir=osp.dirname(cached),
            map_location=map_location,
            progress=False,
            weights_only=True)


def load_from_url(url: str,
                  map_location: MapLocation = None,
                  source: Optional[str] = None) -> dict:
    """An ``http(s)://`` checkpoint, downloaded into torch's hub cache
    (``torch.hub.get_dir()/checkpoints``) and read with the allow-list.

    As mmengine does, rank 0 downloads first and the other ranks read its
    file after a barrier, so that one file is not fetched N times.

    Args:
        url: what to download.
        map_location: as ``torch.load``'s.
        source: the name the config used (``torchvision://resnet50``), for
            messages; default ``url``.
    Raises:
        ModelDownloadError: the file is not cached and could not be
            downloaded.
        UnsafeCheckpointError: the file holds objects outside the
            allow-list.
    """
    source = source or url
    rank, world_size = get_dist_info()
    checkpoint = None
    if rank == 0:
        checkpoint = _fetch_once(url, source, map_location)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = _fetch_once(url, source, map_location)
    return checkpoint


def load_from_torchvision(filename: str, map_location: MapLocation = None):
    """``torchvision://NAME`` (and the deprecated ``modelzoo://NAME``):
    torchvision's ImageNet weights, through :func:`load_from_url`."""
    name = filename.split('://', 1)[1]
    urls = get_torchvision_models()
    if name not in urls:
        raise ModelDownloadError(
            f'{filename}: torchvision has no weights named {name!r}. '
            f'Known names include {", ".join(sorted(urls)[:12])}, ...')
    return load_from_url(urls[name], map_location, source=filename)


def _mmengine_home() -> str:
    """The folder mmengine resolves relative ``open-mmlab://`` paths in
    (its ``_get_mmengine_home``, which is private)."""
    return osp.expanduser(
        os.getenv(
            'MMENGINE_HOME',
            osp.join(os.getenv('XDG_CACHE_HOME', '~/.cache'), 'mmengine')))


def load_from_openmmlab(filename: str, map_location: MapLocation = None):
    """``open-mmlab://NAME`` (or ``openmmlab://NAME``): OpenMMLab's model
    zoo as mmengine resolves it, through :func:`load_from_url` (or, for an
    entry that names a file, :func:`load_from_local`)."""
    name = filename.split('://', 1)[1]
    name = get_deprecated_model_names().get(name, name)
    urls = get_external_models()
    if name not in urls:
        raise ModelDownloadError(
            f'{filename}: the OpenMMLab model zoo has no entry {name!r}.')
    url = urls[name]
    if url.startswith(('http://', 'https://')):
        return load_from_url(url, map_location, source=filename)
    return load_from_local(osp.join(_mmengine_home(), url), map_location)


def load_from_object_storage(filename: str,
                             map_location: MapLocation = None):
    """``s3://`` and ``petrel://`` (optionally ``cluster:s3://``): the
    bytes fetched by mmengine's petrel file backend, as mmengine's own
    loader fetches them, then read with the allow-list."""
    backend = get_file_backend(filename, backend_args=dict(backend='petrel'))
    data = backend.get(filename)
    with allow_listed(filename):
        return torch.load(
            io.BytesIO(data), map_location=map_location, weights_only=True)


def refuse_pavi(filename: str, map_location: MapLocation = None):
    """``pavi://``: mmengine fetches these with OpenMMLab's internal
    ``pavi`` client and an unrestricted ``torch.load``; refused."""
    raise UnsafeCheckpointError(
        f'Refusing to load checkpoint {filename!r}: pavi:// model-cloud '
        'checkpoints are not read by this toolbox. Download the file and '
        'give its local path instead.')


def load_from_mmcls(filename: str, map_location: MapLocation = None):
    """``mmcls://NAME``: an MMClassification classifier, through
    :func:`load_from_url`, reduced to its backbone's weights with the
    ``backbone.`` prefix removed (what mmengine's own loader returns)."""
    name = filename.split('://', 1)[1]
    checkpoint = load_from_url(
        get_mmcls_models()[name], map_location, source=filename)
    state_dict = checkpoint.get('state_dict', checkpoint)
    return dict(
        state_dict=OrderedDict((key[len('backbone.'):], value)
                               for key, value in state_dict.items()
                               if key.startswith('backbone.')))


# Every scheme mmengine registers a loader for (each prefix spelt as
# mmengine spells it, so that ours replaces its loader rather than sitting
# beside it: mmengine tries the longest prefix first).
_LOADERS = (
    ('', load_from_local),
    (('http://', 'https://'), load_from_url),
    (('torchvision://', 'modelzoo://'), load_from_torchvision),
    (('open-mmlab://', 'openmmlab://'), load_from_openmmlab),
    ('mmcls://', load_from_mmcls),
    ((r'(\S+\:)?s3://', r'(\S+\:)?petrel://'), load_from_object_storage),
    ('pavi://', refuse_pavi),
)


def setup_checkpoint_io() -> None:
    """Route mmengine's checkpoint loading through our safe loaders: local
    files through :func:`load_from_local`, downloads through
    :func:`load_from_url` and the model-zoo schemes built on it, object
    storage through :func:`load_from_object_storage`; ``pavi://`` is
    refused (:func:`refuse_pavi`).

    Called by the entry points (the tools, ``init_detector``); safe to call
    more than once. Atomic saving needs no set-up here: ``CheckpointHook``
    asks for it (:func:`atomic_backend_args`).
    """
    for prefixes, loader in _LOADERS:
        CheckpointLoader.register_scheme(
            prefixes=prefixes, loader=loader, force=True)


def _refusal(source: str,
             error: pickle.UnpicklingError,
             what: str = 'checkpoint') -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f'Refusing to load {what} {source!r}: it contains objects '
        'that are not plain tensors, numbers or mmengine log buffers, and '
        'unpickling them could run code. Only load files you trust; a '
        f'{what} written by this toolbox never needs this. '
        f'Details: {_refusal_reason(str(error))}')


def _refusal_reason(message: str) -> str:
    """What torch's weights_only error says was refused, on one line.

    Its advice to load with ``weights_only=False``, its hint to allow-list
    the global and its pointer to the documentation are dropped: turning
    the check off is not ours to suggest. (torch words the error in more
    than one way: ``WeightsUnpickler error: Unsupported global: ...`` or
    ``Trying to load unsupported GLOBAL ...``.)
    """
    reasons = []
    for line in message.splitlines():
        line = line.strip().replace('WeightsUnpickler error:', '').strip()
        if not line or 'weights_only' in line or line.startswith(
            ('Weights only load failed', 'Check the documentation',
             '(1)', '(2)')):
            continue
        reasons.append(line.split(' Please use `torch.serialization')[0])
    return ' '.join(reasons) or message.strip()


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
    """mmengine's local file backend with atomic ``put`` and ``put_text``
    (:func:`atomic_write`); reading, listing and removing are
    ``LocalBackend``'s."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write(filepath, obj)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        atomic_write(filepath, obj.encode(encoding))


def atomic_backend_args() -> dict:
    """``backend_args`` that make mmengine write through
    :class:`AtomicLocalBackend`, registering it under
    :data:`ATOMIC_BACKEND` the first time (with no URI prefix, so that it
    is used only where asked for)."""
    if registered_backends.get(ATOMIC_BACKEND) is not AtomicLocalBackend:
        register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)
    return dict(backend=ATOMIC_BACKEND)
