"""Imports point one way: tools -> apis / engine -> models / datasets /
evaluation -> structures (with the error types, the registries and the
drawing code at the bottom, where every layer may use them); the engine's
registered types are found without the lower layers importing it."""
import pytest
import ast
import os
import os.path as osp
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Tuple

PACKAGE = Path(osp.dirname(__file__)).parents[1] / 'tood'

# Higher numbers sit above lower ones and may import them (and their own
# level); a subpackage not named here counts as the top.
LEVELS = {
    'tood': 0,
    'tood.errors': 0,
    'tood.output_paths': 0,
    'tood.registry': 0,
    'tood.structures': 0,
    'tood.visualization': 0,
    'tood.models': 1,
    'tood.datasets': 1,
    'tood.evaluation': 1,
    'tood.utils': 2,
    'tood.engine': 3,
    'tood.apis': 3,
}
TOP = max(LEVELS.values()) + 1


def level(module: str) -> int:
    """The level of ``module``: that of its closest named package."""
    parts = module.split('.')
    for end in range(len(parts), 1, -1):
        name = '.'.join(parts[:end])
        if name in LEVELS:
            return LEVELS[name]
    return LEVELS['tood'] if module == 'tood' else TOP


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join(parts)


def tood_imports(path: Path) -> Iterator[Tuple[int, str]]:
    """(line, module) of every import of a tood module in ``path``,
    relative ones resolved."""
    name = module_name(path)
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split('.')[0] == 'tood':
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module
                                          else []))
            else:
                target = node.module or ''
            if target.split('.')[0] == 'tood':
                yield node.lineno, target


def test_no_import_points_upward():
    upward = []
    for path in sorted(PACKAGE.rglob('*.py')):
        own = level(module_name(path))
        for line, target in tood_imports(path):
            if level(target) > own:
                upward.append(f'{path.relative_to(PACKAGE.parent)}:{line} '
                              f'imports {target}')
    assert not upward, '\n'.join(upward)


def test_the_levels_are_read_as_meant():
    assert level('tood') == 0
    assert level('tood.models.heads.tood_head') == 1
    assert level('tood.engine.hooks.report_hook') == 3
    assert level('tood.analysis.alignment') == TOP


# A fresh interpreter: in this one, other tests have imported tood.engine.
LAZY_ENGINE = """
import sys
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import HOOKS, MODEL_WRAPPERS, VISUALIZERS
from tood.utils import register_all_modules

register_all_modules()
assert 'tood.engine' not in sys.modules, 'register_all_modules imported it'
hook = HOOKS.build(dict(type='TrainingReportHook'))
assert type(hook).__module__ == 'tood.engine.hooks.report_hook'
wrapper = build_optim_wrapper(
    torch.nn.Linear(2, 2),
    dict(type='CPUBFloat16OptimWrapper', optimizer=dict(type='SGD', lr=0.1)))
assert type(wrapper).__name__ == 'CPUBFloat16OptimWrapper'
# As Runner.wrap_model looks the CPU DDP wrapper up (with its scope).
assert MODEL_WRAPPERS.get('tood.CPUDistributedDataParallel') is not None
# The visualizer that takes backends by name, and tood's MLflow backend
# under mmengine's name.
visualizer = VISUALIZERS.build(dict(
    type='Visualizer', name='lazy', vis_backends=['MLflowVisBackend'],
    save_dir='unused'))
assert type(visualizer).__module__ == 'tood.engine.tracking'
backend = visualizer.get_backend('MLflowVisBackend')
assert type(backend).__module__ == 'tood.engine.tracking'
"""


@pytest.mark.e2e
def test_engine_types_resolve_without_importing_the_engine_first():
    """register_all_modules stays below tood.engine: the hooks and wrappers
    a config names are found because the tood registries import
    tood.engine themselves (their ``locations``)."""
    proc = subprocess.run([sys.executable, '-c', LAZY_ENGINE],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
