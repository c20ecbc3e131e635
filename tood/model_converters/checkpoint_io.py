"""Reading third-party checkpoints and writing converted ones.

Sources are read through the same ``weights_only`` allow-list as the
toolbox's own checkpoints (:mod:`tood.engine.checkpoint`), so a file that
would run code while unpickling is refused, not executed. Converted files
hold only tensors and plain Python values, so ``tools/test.py`` and
``init_cfg=dict(type='Pretrained', ...)`` load them through that loader.
"""
import os
import os.path as osp
from collections import OrderedDict
from typing import Any, Dict, Tuple

import torch
from torch import Tensor

from tood.engine.checkpoint import load_from_local

StateDict = Dict[str, Tensor]


def load_source_checkpoint(path: str) -> Dict[str, Any]:
    """Load ``path`` on the CPU; a bare state dict comes back as it is.

    Raises:
        tood.engine.UnsafeCheckpointError: the file holds objects outside
            the allow-list (nothing in it was run).
    """
    checkpoint = load_from_local(path, map_location='cpu')
    if not isinstance(checkpoint, dict):
        raise TypeError(f'{path} holds a {type(checkpoint).__name__}, not a '
                        'checkpoint dict or a state dict')
    return checkpoint


def split_checkpoint(checkpoint: Dict[str, Any]) -> Tuple[StateDict, dict]:
    """The model's tensors and the ``meta`` dict of a checkpoint.

    Accepts mmcv/mmengine checkpoints (``state_dict`` + ``meta``), those
    that name the weights ``model``, and bare state dicts. A ``module.``
    prefix left by (Distributed)DataParallel is removed.
    """
    if isinstance(checkpoint.get('state_dict'), dict):
        state_dict = checkpoint['state_dict']
    elif isinstance(checkpoint.get('model'), dict):
        state_dict = checkpoint['model']
    else:
        state_dict = checkpoint
    not_tensors = [k for k, v in state_dict.items() if not torch.is_tensor(v)]
    if not_tensors:
        raise ValueError('the state dict holds non-tensor entries: ' +
                         ', '.join(sorted(not_tensors)[:10]))
    stripped = OrderedDict(
        (k[len('module.'):] if k.startswith('module.') else k, v)
        for k, v in state_dict.items())
    meta = checkpoint.get('meta')
    return stripped, meta if isinstance(meta, dict) else {}


def save_converted(path: str, state_dict: StateDict, meta: dict) -> None:
    """Write ``{'state_dict': ..., 'meta': ...}`` as mmengine does.

    The tensors are made contiguous and detached from the source file's
    storages, so the output holds exactly the listed weights.
    """
    _check_plain(meta, 'meta')
    out = OrderedDict((k, v.detach().contiguous().clone())
                      for k, v in state_dict.items())
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    torch.save({'state_dict': out, 'meta': meta}, path)


def _check_plain(value: Any, where: str) -> None:
    """Refuse anything but str/int/float/bool/None and lists, tuples and
    str-keyed dicts of them, so the written meta needs no allow-list."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f'{where}[{i}]')
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f'{where} has a non-string key {key!r}')
            _check_plain(item, f'{where}.{key}')
        return
    raise TypeError(f'{where} is a {type(value).__name__}; converted '
                    'checkpoints hold only plain values')
