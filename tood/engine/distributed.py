"""Distributed data parallel on machines without CUDA.

mmengine 0.10.7 assumes a GPU per process in two places:

* ``mmengine.dist.init_dist('pytorch')`` calls ``torch.cuda.set_device``
  before creating the process group, which raises without CUDA;
* ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to every
  ``DistributedDataParallel`` wrapper, and torch's DDP rejects
  ``device_ids`` for a module that lives on the CPU.

:func:`setup_cpu_distributed` therefore creates the gloo process group itself
(the Runner skips ``init_dist`` when a group already exists) and selects
:class:`CPUDistributedDataParallel`, which drops the device ids.
"""
import datetime
import gc
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel

from tood.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for modules on the CPU."""

    def __init__(self, module: torch.nn.Module,
                 device_ids: Optional[list] = None, **kwargs):
        # The Runner always passes device_ids=[LOCAL_RANK]; CPU modules must
        # be wrapped with None.
        super().__init__(module=module, device_ids=None, **kwargs)


def setup_cpu_distributed(cfg: Config, launcher: str) -> Optional[str]:
    """Prepare ``cfg`` for a multi-process run on the CPU.

    Does nothing (and returns None) for ``launcher='none'`` or when CUDA is
    available: then mmengine's own path with the config's backend applies.
    Otherwise switches the backend to gloo, initialises the process group
    from torchrun's environment, selects the CPU wrapper and returns a line
    for the log saying so.

    Raises:
        ValueError: for launchers other than 'pytorch' without CUDA.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return None
    if launcher != 'pytorch':
        raise ValueError(
            f"Without CUDA only '--launcher pytorch' (torchrun) is supported, "
            f'got {launcher!r}.')
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    if not torch_dist.is_initialized():
        timeout = datetime.timedelta(seconds=dist_cfg.get('timeout', 1800))
        torch_dist.init_process_group(backend='gloo', timeout=timeout)

    wrapper_cfg = dict(cfg.get('model_wrapper_cfg') or {})
    if wrapper_cfg.get('type', 'MMDistributedDataParallel') == \
            'MMDistributedDataParallel':
        # With its scope: the Runner looks the wrapper's class up in
        # mmengine's root registry (Registry.get, which, unlike build, does
        # not switch to the default scope's registry).
        wrapper_cfg['type'] = 'tood.CPUDistributedDataParallel'
        # The same defaults the Runner uses when it builds the wrapper.
        wrapper_cfg.setdefault('broadcast_buffers', False)
        wrapper_cfg.setdefault('find_unused_parameters',
                               cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper_cfg
    return (f'No CUDA: {torch_dist.get_world_size()} processes run on the CPU '
            f"over gloo, the model wrapped in {wrapper_cfg['type']}.")


def shutdown_distributed(wait: bool = True) -> None:
    """Wait for every process, then destroy the process group, if any.

    Left to the interpreter's teardown, gloo's threads can be destroyed
    while still joinable, and a process that finished its work aborts with
    "terminate called without an active exception" (SIGABRT), failing the
    whole torchrun job. The caller drops its runner first: the DDP wrapper
    holds the group, which is only freed with it.

    Args:
        wait: meet the other processes at a barrier first; pass False after
            an error, when they may never arrive.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    gc.collect()
    try:
        if wait:
            # No process may close its connections while another still
            # talks.
            torch_dist.barrier()
    finally:
        torch_dist.destroy_process_group()
