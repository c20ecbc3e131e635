"""Mixed precision for ``tools/train.py --amp``.

On CUDA, mmengine's ``AmpOptimWrapper`` runs float16 autocast with a
dynamic loss scale. That wrapper refuses to build without an accelerator,
so on the CPU we autocast to bfloat16 instead: it has float32's exponent
range, so gradients cannot underflow and no loss scaling is needed.
"""
from contextlib import contextmanager

import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUBFloat16OptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward passes run under CPU bfloat16
    autocast."""

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        with super().optim_context(model), torch.autocast(
                device_type='cpu', dtype=torch.bfloat16):
            yield


def setup_amp(cfg: Config) -> str:
    """Switch ``cfg.optim_wrapper`` to mixed precision for this machine.

    Returns a line for the log saying what was chosen.
    """
    current = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if current in ('AmpOptimWrapper', 'CPUBFloat16OptimWrapper'):
        return f'--amp: the config already uses {current}.'
    if current != 'OptimWrapper':
        raise ValueError(
            f'--amp cannot convert optim_wrapper type {current!r}; set a '
            'mixed-precision wrapper in the config instead.')
    if torch.cuda.is_available():
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
        return '--amp: float16 autocast with a dynamic loss scale.'
    cfg.optim_wrapper.type = 'CPUBFloat16OptimWrapper'
    return ('--amp: no CUDA device, so training uses bfloat16 autocast on the '
            'CPU (no loss scaling needed).')
