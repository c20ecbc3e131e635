"""Runner-side pieces: hooks, safe checkpoint loading, CPU DDP, AMP and
config helpers. Importing this package registers the hooks and wrappers."""
from .amp import CPUBFloat16OptimWrapper, setup_amp
from .checkpoint import (load_from_local,
                         register_safe_globals)
from .config import (dataset_missing_message, load_config,
                     merge_cfg_options, missing_dataset_files,
                     unknown_cfg_keys)
from .distributed import (CPUDistributedDataParallel, setup_cpu_distributed,
                          shutdown_distributed)
from .hooks import (DetVisualizationHook, TestProgressBarHook,
                    TrainingReportHook)

__all__ = [
    'CPUBFloat16OptimWrapper', 'CPUDistributedDataParallel',
    'DetVisualizationHook', 'TestProgressBarHook',
    'TrainingReportHook',
    'dataset_missing_message', 'load_config',
    'load_from_local',
    'merge_cfg_options', 'missing_dataset_files', 'register_safe_globals',
    'setup_amp', 'setup_cpu_distributed', 'shutdown_distributed',
    'unknown_cfg_keys'
]
