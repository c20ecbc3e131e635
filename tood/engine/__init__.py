"""Runner-side pieces: the tools' shared entry, config checks, hooks, safe
checkpoint loading, CPU DDP, AMP, compiling and config helpers.

Importing this package registers its hooks, wrappers, visualizer and
visualizer backends in the tood registries (which also import it on their
own when a config names one of them) and changes nothing else: checkpoint
loading is set up by the entry points (:func:`setup_checkpoint_io`).
"""
from .amp import (AMP_DTYPES, CUDA_AMP_SETTINGS, CPUBFloat16OptimWrapper,
                  setup_amp)
from .checkpoint import load_from_local, load_pickle, setup_checkpoint_io
from .compile import (CompiledNetwork, CompileHook, compile_network,
                      compile_options, compiled_network, setup_compile)
from .config import (dataset_missing_message, drop_disabled_hooks,
                     load_config, merge_cfg_options, missing_dataset_files,
                     unknown_cfg_keys)
from .config_check import check_config, check_required_keys
from .distributed import (CPUDistributedDataParallel, setup_cpu_distributed,
                          shutdown_distributed)
from .entry import run_tool
from .errors import explain_error, exit_if_user_error
from .hooks import (DetVisualizationHook, EMAHook, TestProgressBarHook,
                    TrainingReportHook, averaged_model)
from .tiled_test_loop import TiledTestLoop
from .tracking import MLflowVisBackend, Visualizer

__all__ = [
    'AMP_DTYPES', 'CUDA_AMP_SETTINGS', 'CPUBFloat16OptimWrapper',
    'CPUDistributedDataParallel',
    'CompileHook', 'CompiledNetwork', 'DetVisualizationHook', 'EMAHook',
    'MLflowVisBackend', 'TestProgressBarHook', 'TiledTestLoop',
    'TrainingReportHook', 'averaged_model',
    'check_config', 'check_required_keys', 'compile_network',
    'compile_options', 'compiled_network', 'dataset_missing_message',
    'drop_disabled_hooks', 'explain_error', 'exit_if_user_error',
    'load_config', 'load_from_local', 'load_pickle', 'merge_cfg_options',
    'missing_dataset_files', 'run_tool', 'setup_amp', 'setup_checkpoint_io',
    'setup_compile', 'setup_cpu_distributed', 'shutdown_distributed',
    'unknown_cfg_keys', 'Visualizer'
]
