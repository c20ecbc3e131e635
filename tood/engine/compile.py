"""``--compile``: ``torch.compile`` of a detector's network.

**What is compiled.** mmengine's runner option (``cfg.compile``) compiles
``model.train_step`` whole. For a detector that is the wrong unit: the
label assignment and the losses have data-dependent shapes (the number of
GT boxes changes every batch, the positives are a ``nonzero``), the
backward and the optimizer step are graph breaks, and the data
preprocessor walks lists of samples. On a tiny TOOD, compiling
``train_step`` traced 77 graph breaks into 67 graphs and recompiled the
assigner whenever the number of GT boxes changed. Here only
``TOOD.network`` is compiled: backbone, neck and head, one graph whose
only input is the image batch, where nearly all the arithmetic is. The
rest stays eager. ``cfg.compile`` keeps mmengine's meaning (True, or a
dict of ``torch.compile`` keyword arguments); :func:`setup_compile` turns
it into a :class:`CompileHook`, so that mmengine does not compile
``train_step`` as well.

**Varying input sizes.** By default (``dynamic=None``) the first graph is
specialised to the first batch's size, which gives the fastest kernels to
a job whose batches all have one size (the main job). The first time a
dimension changes (batch, height or width: multi-scale training,
aspect-ratio batches, a last smaller batch), dynamo recompiles once with
that dimension symbolic, and later sizes reuse that graph. So a run
compiles at most once per dimension that varies, plus once for batch 1
(dynamo specialises sizes 0 and 1), plus the same again for the eval
graph (validation runs in eval mode without autograd), never once per
step. ``compile=dict(dynamic=True)`` makes every size symbolic from the
first graph: one compile for all sizes, with kernels that cannot
specialise. Duck sizing is turned off while the network runs: it would
otherwise tie equal sizes together (a square image's height and width,
a batch of 3 and the 3 colour channels) and recompile when they part.

**Failures.** An unknown backend or ``torch.compile`` argument stops the
run before anything is built (:class:`ConfigError` naming the key).
Compilation itself happens at the first call and at each recompile.
When it fails (no working C++ compiler, an operation the backend cannot
lower, a dynamo error), the network falls back to eager for the rest of
the run, with a warning that names the error: the run goes on, slower.
The backward graph is compiled together with the forward (not lazily at
the first backward), so its failures are caught at the same place. An
error of the model itself (a wrong shape, say) is raised again by the
eager call, with its own traceback.
"""
import inspect
import logging
import types
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from tood.errors import ConfigError
from tood.registry import HOOKS


def compile_errors() -> Tuple[type, ...]:
    """What a compilation failure raises: dynamo's own errors, which
    include BackendCompilerFailed (inductor's errors, a missing C++
    compiler). Imported when needed: torch._dynamo takes a second to
    import, and most runs never compile."""
    from torch._dynamo.exc import TorchDynamoException
    return (TorchDynamoException, )


# The config key mmengine reads, and the default_hooks entry it becomes.
COMPILE_KEY = 'compile'


def failure_summary(error: BaseException) -> str:
    """One line naming what made compiling fail: the backend's own error
    where dynamo wraps one (its message starts "backend=... raised:")."""
    cause = getattr(error, 'inner_exception', None) or error
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return f'{type(cause).__name__}: {lines[0] if lines else ""}'.strip()


class CompiledNetwork:
    """``torch.compile`` of a detector's ``network`` function that falls
    back to the eager function when compiling fails.

    Called as ``compiled_network(detector, inputs)``. It holds the class's
    plain function, not a bound method, and is bound to the detector with
    ``types.MethodType``: a deep copy of the detector (an EMA copy, say)
    then calls it with the copy, never with the original.

    Args:
        function: the unbound network function, ``type(model).network``.
        options: keyword arguments of ``torch.compile``.
    """

    def __init__(self, function: Callable, options: Dict[str, Any]) -> None:
        self.eager = function
        self.options = dict(options)
        self.compiled = torch.compile(function, **self.options)
        # The error that ended compiling, once one has.
        self.failure: Optional[str] = None

    def __call__(self, model: nn.Module, inputs: torch.Tensor):
        import torch._functorch.config as functorch_config
        import torch.fx.experimental._config as fx_config
        if self.failure is None:
            try:
                with fx_config.patch(use_duck_shape=False), \
                        functorch_config.patch(
                            force_non_lazy_backward_lowering=True):
                    return self.compiled(model, inputs)
            except compile_errors() as error:
                self.failure = failure_summary(error)
                print_log(
                    'torch.compile failed, so the network runs eagerly '
                    f'from here on (slower, same results): {self.failure}',
                    logger='current',
                    level=logging.WARNING)
        # If the failed compile came after a graph break, the first part of
        # the network ran once already; running it again only repeats a
        # BatchNorm statistics update, once in the whole run.
        return self.eager(model, inputs)


def compile_options(value: Any) -> Optional[Dict[str, Any]]:
    """``torch.compile`` keyword arguments from a ``cfg.compile`` value:
    None when it asks for no compiling (None or False).

    Raises:
        ConfigError: the value is neither a bool nor a dict, or the dict
            has a key ``torch.compile`` does not take.
    """
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f'{COMPILE_KEY} must be True, False or a dict of torch.compile '
            f'arguments, got {value!r}')
    accepted = [
        name for name in inspect.signature(torch.compile).parameters
        if name != 'model'
    ]
    unknown = [key for key in value if key not in accepted]
    if unknown:
        raise ConfigError(
            f'{COMPILE_KEY} has the key(s) {", ".join(map(repr, unknown))}, '
            f'which torch.compile does not take (it takes '
            f'{", ".join(accepted)})')
    backend = value.get('backend')
    if isinstance(backend, str):
        from torch._dynamo import list_backends
        known = list_backends(exclude_tags=())
        if backend not in known:
            raise ConfigError(
                f'{COMPILE_KEY}.backend {backend!r} is not a torch.compile '
                f'backend; this torch has {", ".join(known)}')
    return dict(value)


def compile_network(model: nn.Module,
                    options: Dict[str, Any]) -> CompiledNetwork:
    """Compile ``model.network`` in place (see the module docstring).

    Args:
        model: a detector with a ``network(inputs)`` method (``TOOD``), or
            a model wrapper (DDP) around one.
        options: keyword arguments of ``torch.compile``.
    Returns:
        The :class:`CompiledNetwork` now bound as ``model.network``.
    """
    if is_model_wrapper(model):
        model = model.module
    if compiled_network(model) is not None:
        raise RuntimeError(f'the network of this {type(model).__name__} is '
                           'compiled already')
    network = getattr(type(model), 'network', None)
    if network is None:
        raise ConfigError(
            f'{COMPILE_KEY}: {type(model).__name__} has no network() method '
            'to compile (tood.models.TOOD has one)')
    compiled = CompiledNetwork(network, options)
    # An instance attribute shadows the class's method for this model only.
    model.network = types.MethodType(compiled, model)
    return compiled


def compiled_network(model: nn.Module) -> Optional[CompiledNetwork]:
    """The :class:`CompiledNetwork` of ``model`` (or of the model in a
    wrapper), or None when its network is not compiled."""
    if is_model_wrapper(model):
        model = model.module
    function = getattr(getattr(model, 'network', None), '__func__', None)
    return function if isinstance(function, CompiledNetwork) else None


@HOOKS.register_module()
class CompileHook(Hook):
    """Compile the runner's detector network (:func:`compile_network`)
    when training, validation or testing starts.

    Not at build time: hooks' ``before_run`` (``EMAHook`` copying the
    model) and checkpoint loading come first, so nothing copies or
    replaces the compiled model afterwards.

    Args:
        **options: keyword arguments of ``torch.compile``.
    """

    priority = 'VERY_LOW'

    def __init__(self, **options) -> None:
        self.options = compile_options(options)

    def before_train(self, runner) -> None:
        self._compile(runner)

    def before_val(self, runner) -> None:
        self._compile(runner)

    def before_test(self, runner) -> None:
        self._compile(runner)

    def _compile(self, runner) -> None:
        if compiled_network(runner.model) is not None:
            return
        try:
            compile_network(runner.model, self.options)
        except ConfigError:
            raise
        except (RuntimeError, TypeError, ValueError) as error:
            # torch.compile checks its arguments (mode, options) here,
            # before anything is traced.
            raise ConfigError(
                f'{COMPILE_KEY}: torch.compile refused the settings '
                f'{self.options}: {failure_summary(error)}') from error
        settings = ', '.join(f'{k}={v!r}' for k, v in self.options.items())
        runner.logger.info(
            f'torch.compile({settings or "default settings"}) of the '
            'network (backbone, neck, head); the first steps of each '
            'input size and mode compile, which takes minutes on a CPU.')


def setup_compile(cfg: Config) -> Optional[str]:
    """Turn ``cfg.compile`` (mmengine's key: True or a dict of
    ``torch.compile`` arguments) into ``default_hooks.compile``, a
    :class:`CompileHook`, and remove it, so that mmengine's runner does not
    compile ``train_step`` too.

    Returns:
        A line for the log, or None when the config asks for no compiling.
    Raises:
        ConfigError: a bad ``compile`` value (:func:`compile_options`).
    """
    options = compile_options(cfg.get(COMPILE_KEY))
    if COMPILE_KEY in cfg:
        cfg.pop(COMPILE_KEY)
    if options is None:
        return None
    hooks = cfg.get('default_hooks') or {}
    hooks[COMPILE_KEY] = dict(type='CompileHook', **options)
    cfg.default_hooks = hooks
    return ('--compile: torch.compile of the network (backbone, neck and '
            'head); assignment, losses and post-processing stay eager.')
