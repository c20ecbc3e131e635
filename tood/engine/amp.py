"""Mixed precision: ``tools/train.py --amp [float16|bfloat16]`` and the CPU
bfloat16 wrapper.

On CUDA, mmengine's ``AmpOptimWrapper`` runs float16 autocast with a
dynamic loss scale, or with ``--amp bfloat16`` bfloat16 autocast with the
scale fixed at 1. That wrapper refuses to build without an accelerator,
so on the CPU we autocast to bfloat16 instead: it has float32's exponent
range, so gradients cannot underflow and no loss scaling is needed.
"""
import logging
from contextlib import contextmanager
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper

from tood.errors import ConfigError
from tood.registry import OPTIM_WRAPPERS

# What --amp DTYPE takes.
AMP_DTYPES = ('float16', 'bfloat16')

# The optim_wrapper entries --amp DTYPE sets on CUDA: float16 needs a
# dynamic loss scale (its exponent range underflows small gradients);
# bfloat16 has float32's range, so its scale stays at 1.
CUDA_AMP_SETTINGS = {
    'float16': dict(type='AmpOptimWrapper', dtype='float16',
                    loss_scale='dynamic'),
    'bfloat16': dict(type='AmpOptimWrapper', dtype='bfloat16',
                     loss_scale=1.0),
}


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX).

    Elsewhere oneDNN emulates bfloat16 convolutions, and autocast makes
    training slower than float32 instead of faster.
    """
    checks = ('_is_avx512_bf16_supported', '_is_amx_tile_supported')
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


@OPTIM_WRAPPERS.register_module()
class CPUBFloat16OptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward passes run under CPU bfloat16
    autocast, on CPUs that compute bfloat16 natively.

    On a 2-core AVX-512 BF16 machine this trains the shapes config about
    1.5x faster than float32. Other CPUs train in float32, with a warning.
    Weights, gradients and the optimizer state stay float32 throughout.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.autocast = cpu_has_native_bfloat16()
        if not self.autocast:
            print_log(
                'This CPU has no native bfloat16 (AVX-512 BF16 or AMX), '
                'where emulated bfloat16 is slower than float32: training '
                'in float32.',
                logger='current',
                level=logging.WARNING)

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        with super().optim_context(model), torch.autocast(
                device_type='cpu',
                dtype=torch.bfloat16,
                enabled=self.autocast):
            yield


def setup_amp(cfg: Config, dtype: Optional[str] = None) -> str:
    """Switch ``cfg.optim_wrapper`` to mixed precision for this machine.

    Args:
        cfg: the config; its ``optim_wrapper`` is edited in place.
        dtype: 'float16', 'bfloat16' or None for this machine's default:
            float16 with a dynamic loss scale on CUDA (the fastest on most
            GPUs), bfloat16 on the CPU. 'bfloat16' on CUDA autocasts to
            bfloat16 with a loss scale fixed at 1 (bfloat16 has float32's
            exponent range, so gradients do not underflow); 'float16' on
            the CPU is refused.
    Returns:
        A line for the log saying what was chosen.
    Raises:
        ConfigError: ``dtype`` is not one of :data:`AMP_DTYPES`, is
            'float16' without CUDA, or the config's wrapper type cannot be
            converted.
    """
    if dtype is not None and dtype not in AMP_DTYPES:
        raise ConfigError(f'--amp takes {" or ".join(AMP_DTYPES)}, got '
                         f'{dtype!r}')
    current = cfg.optim_wrapper.get('type', 'OptimWrapper')
    on_cuda = torch.cuda.is_available()
    if current not in ('OptimWrapper', 'CPUBFloat16OptimWrapper',
                       'AmpOptimWrapper'):
        raise ConfigError(
            f'--amp cannot convert optim_wrapper type {current!r}; set a '
            'mixed-precision wrapper in the config instead.')
    if not on_cuda:
        if dtype == 'float16':
            raise ConfigError(
                '--amp float16 needs a CUDA device; on the CPU --amp '
                'trains in bfloat16.')
        if current == 'AmpOptimWrapper':
            raise ConfigError(
                'optim_wrapper AmpOptimWrapper needs a CUDA device; use '
                'CPUBFloat16OptimWrapper (or --amp with OptimWrapper) on '
                'the CPU.')
        if current == 'CPUBFloat16OptimWrapper':
            return f'--amp: the config already uses {current}.'
        cfg.optim_wrapper.type = 'CPUBFloat16OptimWrapper'
        return ('--amp: no CUDA device, so training uses bfloat16 autocast '
                'on the CPU (no loss scaling needed).')
    if current == 'AmpOptimWrapper' and dtype is None:
        return f'--amp: the config already uses {current}.'
    # A config written for the CPU (bfloat16 autocast on CPU tensors does
    # nothing on a GPU) gets CUDA's autocast instead.
    settings = dict(CUDA_AMP_SETTINGS[dtype or 'float16'])
    if current == 'AmpOptimWrapper' and dtype == 'float16':
        # The config's own loss scale (static, or dynamic with its
        # settings) is kept.
        settings.pop('loss_scale')
    cfg.optim_wrapper.update(settings)
    if dtype == 'bfloat16':
        return ('--amp bfloat16: bfloat16 autocast on CUDA, without loss '
                'scaling (bfloat16 has float32\'s exponent range).')
    return '--amp: float16 autocast with a dynamic loss scale.'
