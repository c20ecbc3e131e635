"""The body ``tools/train.py`` and ``tools/test.py`` share.

Each tool parses its own arguments and makes its own edits to the config
(``--resume`` and ``--amp`` for training, ``--out`` and ``--show-dir`` for
testing), then hands the config to :func:`run_tool` with what to do with
the runner. A new option is another config edit in its tool (``--compile``
sets mmengine's ``cfg.compile``, which :func:`run_tool` turns into a hook);
a new stage is another entry of ``DATASET_STAGES``.
"""
import sys
from typing import Callable, Optional, Sequence, TypeVar

from mmengine.config import Config
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from tood.errors import ConfigError
from tood.utils import register_all_modules

from .checkpoint import setup_checkpoint_io
from .compile import setup_compile
from .config import (dataset_missing_message, drop_disabled_hooks,
                     missing_dataset_files)
from .config_check import check_config, check_required_keys
from .distributed import setup_cpu_distributed, shutdown_distributed
from .errors import exit_if_user_error
from .hooks import setup_load_from

Result = TypeVar('Result')

# The datasets each stage reads: training validates too when the config
# has a val loop.
DATASET_STAGES = {
    'train': lambda cfg: ['train'] + (['val'] if cfg.get('val_cfg') else []),
    'test': lambda cfg: ['test'],
}


def check_before_build(cfg: Config, stage: str) -> None:
    """Exit with a message, before anything is built, when ``cfg`` cannot
    run ``stage``: a required key is missing, a module type is unknown or
    has a key its class does not take, or the dataset files are not where
    the config says."""
    try:
        check_required_keys(cfg, stage)
        check_config(cfg)
    except ConfigError as error:
        sys.exit(str(error))
    missing = missing_dataset_files(cfg, DATASET_STAGES[stage](cfg))
    if missing:
        sys.exit(dataset_missing_message(cfg, missing))


def check_warmup_can_end(runner: Runner) -> None:
    """Raise :class:`ConfigError` when training would never leave a
    warm-up: each training method of the model that has one
    (``warmup_problem``, TOOD's ``TaskAlignedCriterion``) is asked whether
    it ends under the run's train loop."""
    loop = runner.cfg.get('train_cfg') or {}
    iteration_based = (loop.get('type') == 'IterBasedTrainLoop'
                       or loop.get('by_epoch') is False)
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    for module in model.modules():
        ask = getattr(module, 'warmup_problem', None)
        problem = ask(iteration_based) if callable(ask) else None
        if problem:
            raise ConfigError(problem)


def run_tool(cfg: Config,
             stage: str,
             action: Callable[[Runner], Result],
             log_lines: Sequence[Optional[str]] = ()) -> Result:
    """Check ``cfg``, build its runner and return ``action(runner)``.

    In order: the registries and the 'tood' scope are set up
    (``register_all_modules``); ``cfg.compile`` becomes a ``CompileHook``
    (``setup_compile``) and ``default_hooks`` entries set to None are
    dropped (``drop_disabled_hooks``); ``cfg`` is checked
    (:func:`check_before_build`); checkpoints are loaded safely from here
    on (``setup_checkpoint_io``); without CUDA, ``--launcher pytorch``
    becomes gloo DDP on the CPU (``setup_cpu_distributed``); the runner is
    built, a training run's warm-up asked whether it can end
    (:func:`check_warmup_can_end`), and ``action`` run. An error the user
    can fix (``tood.errors``) ends the process with its message, also
    written to the log; any other keeps its traceback. The process group,
    if any, is shut down at the end either way.

    Args:
        cfg: the config with the tool's edits (``cfg.launcher`` set).
        stage: 'train' or 'test': which keys and datasets are required.
        action: what to do with the runner, e.g. ``Runner.train``.
        log_lines: written to the runner's log once it exists (the tool's
            notes on its edits, such as which mixed precision ``--amp``
            chose); None entries are skipped.
    Returns:
        What ``action`` returned.
    """
    register_all_modules()
    try:
        # cfg.compile becomes a hook (tood compiles the network, not
        # mmengine's train_step); checked here, before anything is built.
        log_lines = [*log_lines, setup_compile(cfg)]
    except ConfigError as error:
        sys.exit(str(error))
    if stage == 'train':
        # Fine-tuning: the classifier mapped by class name (LoadFromHook).
        log_lines.append(setup_load_from(cfg))
    drop_disabled_hooks(cfg)
    check_before_build(cfg, stage)
    setup_checkpoint_io()
    try:
        log_lines = [*log_lines, setup_cpu_distributed(cfg, cfg.launcher)]
    except ValueError as error:
        sys.exit(str(error))

    runner = None
    finished = False
    try:
        runner = Runner.from_cfg(cfg)
        if stage == 'train':
            check_warmup_can_end(runner)
        for line in filter(None, log_lines):
            runner.logger.info(line)
        result = action(runner)
        finished = True
    except Exception as error:
        # A config, data, download or checkpoint problem ends with a
        # message naming the key, file or iteration.
        exit_if_user_error(error, runner)
        raise
    finally:
        runner = None  # frees the DDP wrapper and the process group it holds
        # After an error the other processes may never reach the barrier.
        shutdown_distributed(wait=finished)
    return result
