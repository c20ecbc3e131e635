"""tools/train.py --amp on this machine."""
import pytest
import math
import os.path as osp
import re

import torch
from tool_helpers import (R50_1X, assert_ok, data_options, load_checkpoint,
                         python_tool, tiny_model_options)

# Trainings, exports or tools in their own processes: seconds to
# minutes each (pytest -m "not e2e" leaves them out).
pytestmark = pytest.mark.e2e


def test_amp_trains_in_mixed_precision(two_class_coco, tmp_path):
    work_dir = str(tmp_path / 'work')
    log = assert_ok(
        python_tool(
            'train.py', R50_1X, '--amp', '--work-dir', work_dir,
            '--cfg-options', *tiny_model_options(2),
            *data_options(two_class_coco), 'train_cfg.max_epochs=1',
            'default_hooks.logger.interval=1', cwd=two_class_coco))
    if torch.cuda.is_available():
        assert 'float16 autocast with a dynamic loss scale' in log
        expected = 'AmpOptimWrapper'
    else:
        assert 'bfloat16 autocast on the CPU' in log
        expected = 'CPUBFloat16OptimWrapper'
    with open(osp.join(work_dir, 'tood_r50_fpn_1x_coco.py')) as f:
        dumped = f.read()
    assert f"type='{expected}'" in dumped

    losses = [float(v) for v in re.findall(r'\bloss: ([0-9.naif]+)', log)]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    ckpt = load_checkpoint(osp.join(work_dir, 'epoch_1.pth'))
    # Weights stay float32; only the forward pass runs in reduced precision.
    assert all(v.dtype == torch.float32 for k, v in ckpt['state_dict'].items()
               if v.is_floating_point())
