"""``--compile``: the compiled network, its recompiles across input sizes,
the fallback when compiling fails, and the tools with it.

Most tests compile with the 'eager' backend (dynamo's capture and guards,
no code generation), which recompiles exactly when inductor would and
takes seconds; one runs inductor with a C++ compiler that fails.
"""
import copy
import glob
import importlib.util
import logging
import os.path as osp
import pickle

import pytest
import torch
import torch._dynamo
from mmengine.config import Config
from mmengine.runner import Runner
from torch import nn

import tood.engine.compile as compile_module
from tood.engine import (compile_network, compile_options, compiled_network,
                         run_tool, setup_compile)
from tood.errors import ConfigError
from tood.registry import MODELS
from tood.utils import register_all_modules

from main_job_helpers import MAIN_JOB, REPO, as_arguments, tiny_options


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Compiled code is cached per function across models: each test
    starts with none, and leaves none behind."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class Counting:
    """A dynamo backend that runs the captured graph as it is and counts
    the graphs it is given (one per compile or recompile)."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


class TinyNet(nn.Module):
    """A stand-in for a detector: conv, GroupNorm, ReLU as its network."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.ReLU())

    def network(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.body(inputs) * 2


def main_job_model() -> nn.Module:
    """The main job's detector with 2 interactive layers instead of 6:
    the same graph structure, a third of the head's operations to trace."""
    register_all_modules()
    torch.manual_seed(0)
    cfg = Config.fromfile(MAIN_JOB)
    cfg.model.bbox_head.stacked_convs = 2
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def outputs(result) -> list:
    cls_scores, bbox_preds = result
    return list(cls_scores) + list(bbox_preds)


def test_sizes_that_change_recompile_once_each_not_every_step():
    model = TinyNet()
    backend = Counting()
    compile_network(model, dict(backend=backend))
    for shape, graphs in (((2, 3, 32, 32), 1), ((2, 3, 48, 40), 2),
                          ((2, 3, 24, 56), 2), ((4, 3, 24, 56), 3),
                          ((6, 3, 40, 32), 3), ((1, 3, 32, 32), 4),
                          ((3, 3, 64, 64), 4)):
        model.network(torch.randn(shape))
        assert backend.graphs == graphs, shape


@pytest.mark.e2e
def test_a_new_input_size_recompiles_once_not_every_step():
    model = main_job_model().train()
    backend = Counting()
    compile_network(model, dict(backend=backend))
    eager = type(model).network
    expected = [
        # The first size: a graph specialised to it.
        ((2, 128, 128), 1),
        # Height and width change: one recompile with both symbolic...
        ((2, 160, 96), 2),
        # ... which every later size reuses.
        ((2, 192, 128), 2),
        ((2, 128, 128), 2),
        # Batch 1: dynamo specialises sizes 0 and 1, one more graph.
        ((1, 128, 128), 3),
        ((2, 96, 224), 3),
    ]
    for (batch, height, width), graphs in expected:
        inputs = torch.randn(batch, 3, height, width)
        compiled = outputs(model.network(inputs))
        reference = outputs(eager(model, inputs))
        assert backend.graphs == graphs, (batch, height, width)
        for a, b in zip(compiled, reference):
            torch.testing.assert_close(a, b)
    # Validation: eval mode without autograd is another graph, already
    # symbolic in the sizes seen changing.
    model.eval()
    with torch.no_grad():
        for batch, height, width in ((2, 128, 128), (2, 160, 96),
                                     (2, 96, 224)):
            model.network(torch.randn(batch, 3, height, width))
    assert backend.graphs == 4


def test_dynamic_true_compiles_one_graph_for_every_size():
    model = TinyNet()
    backend = Counting()
    compile_network(model, dict(backend=backend, dynamic=True))
    # Square and not, a batch of 3 (the number of channels): duck sizing,
    # turned off while the network runs, would tie these together.
    for shape in ((2, 3, 32, 32), (3, 3, 48, 32), (2, 3, 40, 40),
                  (5, 3, 24, 56)):
        model.network(torch.randn(shape))
    assert backend.graphs == 1


def raising_backend(graph_module, example_inputs):
    raise RuntimeError('no working compiler here')


def backward_failing_backend():
    """Compiles the forward, fails on the backward: without compiling the
    backward eagerly, this would surface in loss.backward()."""
    from torch._dynamo.backends.common import aot_autograd

    def forward(graph_module, example_inputs):
        return graph_module.forward

    def backward(graph_module, example_inputs):
        raise RuntimeError('the backward cannot be lowered')

    return aot_autograd(fw_compiler=forward, bw_compiler=backward)


@pytest.mark.parametrize(
    'backend, message',
    [(raising_backend, 'no working compiler here'),
     (backward_failing_backend(), 'the backward cannot be lowered')])
def test_a_failed_compile_falls_back_to_eager_with_a_warning(
        backend, message, monkeypatch):
    model = TinyNet()
    calls = []
    warnings = []
    monkeypatch.setattr(
        compile_module, 'print_log',
        lambda text, logger, level: warnings.append((level, text)))

    def counted(graph_module, example_inputs):
        calls.append(1)
        return backend(graph_module, example_inputs)

    compiled = compile_network(model, dict(backend=counted))
    inputs = torch.randn(2, 3, 8, 8)
    out = model.network(inputs)
    out.sum().backward()
    assert message in compiled.failure
    assert len(warnings) == 1 and warnings[0][0] == logging.WARNING
    assert 'runs eagerly' in warnings[0][1] and message in warnings[0][1]
    torch.testing.assert_close(out, TinyNet.network(model, inputs))
    # Eager from then on: no second attempt.
    model.network(torch.randn(4, 3, 16, 16)).sum().backward()
    assert len(calls) == 1


def test_a_copy_of_a_compiled_model_runs_its_own_weights():
    # EMAHook deep-copies the model; the copy must not call the original.
    model = TinyNet()
    compile_network(model, dict(backend=Counting()))
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(1.0)
    inputs = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(
        twin.network(inputs), TinyNet.network(twin, inputs))
    assert compiled_network(twin) is not None


def test_compile_settings_become_a_hook_or_stop_with_the_key():
    assert compile_options(None) is None and compile_options(False) is None
    assert compile_options(True) == {}
    cfg = Config(dict(compile=dict(dynamic=True), default_hooks=dict()))
    assert 'network' in setup_compile(cfg)
    assert 'compile' not in cfg
    assert cfg.default_hooks.compile == dict(type='CompileHook',
                                             dynamic=True)
    cfg = Config(dict(compile=False, default_hooks=dict()))
    assert setup_compile(cfg) is None and 'compile' not in cfg
    assert 'compile' not in cfg.default_hooks
    with pytest.raises(ConfigError, match='dynamc'):
        compile_options(dict(dynamc=True))
    with pytest.raises(ConfigError, match="'indcutor' is not a torch"):
        compile_options(dict(backend='indcutor'))
    with pytest.raises(ConfigError, match='True, False or a dict'):
        compile_options('inductor')


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(
        f'tood_tools_{name}', osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_and_keep(runner: Runner) -> Runner:
    runner.train()
    return runner


@pytest.mark.e2e
def test_train_and_test_tools_compile_the_network(tmp_path):
    root = str(tmp_path / 'shapes')
    options = {**tiny_options(root, epochs=1), 'compile.backend': 'eager'}
    # tools/train.py --compile: cfg.compile (here with the backend the
    # options chose) becomes a CompileHook; training and validation run
    # compiled.
    train = load_tool('train')
    args = train.parse_args([
        MAIN_JOB, '--compile', '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', *as_arguments(options)
    ])
    cfg, messages = train.build_config(args)
    runner = run_tool(cfg, 'train', train_and_keep, messages)
    compiled = compiled_network(runner.model)
    assert compiled is not None and compiled.failure is None
    assert compiled.options == dict(backend='eager')
    with open(osp.join(args.work_dir, 'tood_r18_fpn_11e_shapes.py')) as f:
        assert "type='CompileHook'" in f.read()

    # tools/test.py with --compile, and without it (nor the compile
    # settings, which compile too): the same detections.
    eager_options = tiny_options(root, epochs=1)
    predictions, logs = {}, {}
    for name, switch, run_options in (('compiled', ['--compile'], options),
                                      ('eager', [], eager_options)):
        out = str(tmp_path / f'{name}.pkl')
        work_dir = str(tmp_path / f'test_{name}')
        load_tool('test').main([
            MAIN_JOB,
            osp.join(args.work_dir, 'epoch_1.pth'), *switch, '--work-dir',
            work_dir, '--out', out, '--cfg-options',
            *as_arguments(run_options)
        ])
        with open(out, 'rb') as f:
            predictions[name] = pickle.load(f)
        [log] = glob.glob(osp.join(work_dir, '*', '*.log'))
        with open(log) as f:
            logs[name] = f.read()
    assert "torch.compile(backend='eager') of the network" in logs['compiled']
    assert 'torch.compile failed' not in logs['compiled']
    assert 'torch.compile' not in logs['eager']
    compiled, eager = predictions['compiled'], predictions['eager']
    assert [p['img_id'] for p in compiled] == [p['img_id'] for p in eager]
    # score_thr 0: every image has detections to compare.
    assert all(len(p['pred_instances']['scores']) for p in eager)
    # The 'eager' backend runs the captured graph's operations as they
    # are, so the detections are equal bit for bit.
    for a, b in zip(compiled, eager):
        for key in ('bboxes', 'scores', 'labels'):
            assert torch.equal(a['pred_instances'][key],
                               b['pred_instances'][key]), key


@pytest.mark.e2e
def test_inductor_without_a_working_cxx_compiler_falls_back(
        tmp_path, monkeypatch):
    # Inductor, the default backend, with a C++ compiler that always fails
    # (as on a machine without one), and no cached kernels to reuse.
    import torch._inductor.config as inductor_config
    monkeypatch.setenv('TORCHINDUCTOR_CACHE_DIR', str(tmp_path / 'inductor'))
    monkeypatch.setattr(inductor_config.cpp, 'cxx', ('/bin/false', ))
    monkeypatch.setattr(inductor_config, 'fx_graph_cache', False)
    warnings = []
    monkeypatch.setattr(
        compile_module, 'print_log',
        lambda text, logger, level: warnings.append(text))
    model = TinyNet()
    compiled = compile_network(model, {})
    inputs = torch.randn(2, 3, 8, 8)
    out = model.network(inputs)
    out.sum().backward()
    assert 'No working C++ compiler' in compiled.failure
    assert len(warnings) == 1 and 'runs eagerly' in warnings[0]
    torch.testing.assert_close(out, TinyNet.network(model, inputs))
