"""tools/test.py refuses a checkpoint that would run code when loaded."""
import pytest
import os

import torch
from tool_helpers import R50_1X, data_options, python_tool, tiny_model_options

# Trainings, exports or tools in their own processes: seconds to
# minutes each (pytest -m "not e2e" leaves them out).
pytestmark = pytest.mark.e2e


class RunsCode:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_crafted_checkpoint_is_refused_without_traceback(
        two_class_coco, tmp_path):
    marker = tmp_path / 'pwned'
    ckpt = tmp_path / 'crafted.pth'
    torch.save({'state_dict': {}, 'meta': RunsCode(marker)}, ckpt)
    proc = python_tool(
        'test.py', R50_1X, str(ckpt), '--work-dir', str(tmp_path / 'work'),
        '--cfg-options', *tiny_model_options(2),
        *data_options(two_class_coco), cwd=two_class_coco)
    assert proc.returncode != 0
    assert f"Refusing to load checkpoint '{ckpt}'" in proc.stdout
    assert 'Traceback' not in proc.stdout
    assert not marker.exists()
