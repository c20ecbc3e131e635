"""setup.py states the versions the safety promises of docs/robustness.md
rest on."""
import ast
import os.path as osp

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))


def setup_values() -> dict:
    """The constants of setup.py and the requirements it hands to
    setuptools, read without running setup()."""
    with open(osp.join(REPO, 'setup.py')) as f:
        tree = ast.parse(f.read())
    values = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(
                node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    with open(osp.join(REPO, 'requirements.txt')) as f:
        lines = (line.split('#')[0].strip() for line in f)
        values['install_requires'] = [line for line in lines if line]
    return values


def floor(requirements, name: str) -> SpecifierSet:
    for line in requirements:
        requirement = Requirement(line)
        if requirement.name == name:
            return requirement.specifier
    raise AssertionError(f'{name} is not required')


def test_python_versions_with_the_tarfile_data_filter_only():
    # tools/misc/download_dataset.py unpacks with tarfile's filter='data'
    # (3.10.12, 3.11.4, 3.12); the code itself needs 3.10 (glob's
    # root_dir).
    allowed = SpecifierSet(setup_values()['PYTHON_REQUIRES'])
    for version in ('3.9.20', '3.10.11', '3.11.0', '3.11.3'):
        assert version not in allowed, version
    for version in ('3.10.12', '3.11.4', '3.12.0', '3.13.1'):
        assert version in allowed, version


def test_torch_and_onnxruntime_floors():
    values = setup_values()
    # weights_only=True by default and torch.serialization.safe_globals.
    torch = floor(values['install_requires'], 'torch')
    assert '2.5.1' not in torch and '2.6.0' in torch
    # External-data paths checked by ONNX Runtime itself (1.24), also for
    # models read from memory (1.24.3).
    onnxruntime = floor(values['ONNX_EXTRA'], 'onnxruntime')
    assert '1.24.2' not in onnxruntime and '1.24.3' in onnxruntime
