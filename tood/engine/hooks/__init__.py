from .alignment_hook import AlignmentHook
from .checkpoint_hook import CheckpointHook
from .ema_hook import EMAHook, averaged_model
from .epoch_seed_hook import EpochSeedHook
from .load_from_hook import LoadFromHook, setup_load_from
from .loss_check_hook import LossCheckHook
from .num_class_check_hook import NumClassCheckHook
from .pipeline_switch_hook import PipelineSwitchHook
from .progress_bar_hook import TestProgressBarHook
from .report_hook import TrainingReportHook
from .visualization_hook import DetVisualizationHook

__all__ = [
    'AlignmentHook', 'CheckpointHook', 'DetVisualizationHook', 'EMAHook',
    'EpochSeedHook', 'LoadFromHook', 'LossCheckHook', 'NumClassCheckHook',
    'PipelineSwitchHook', 'TestProgressBarHook', 'TrainingReportHook',
    'averaged_model', 'setup_load_from'
]
