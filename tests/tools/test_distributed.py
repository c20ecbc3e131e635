"""Two processes on the CPU through tools/dist_train.sh and dist_test.sh."""
import json
import os.path as osp
import socket
import sys

import pytest
import torch
from tool_helpers import (R50_1X, REPO, assert_ok, data_options,
                         load_checkpoint, run_tool, tiny_model_options)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        torch.cuda.is_available(),
        reason='checks the gloo path taken without CUDA')
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def dist_tool(script, *args, cwd):
    return run_tool(['bash', osp.join(REPO, 'tools', script), *args],
                    cwd=cwd,
                    env=dict(PYTHON=sys.executable, PORT=str(free_port())))


def test_two_process_cpu_training_and_testing(two_class_coco, tmp_path):
    work_dir = str(tmp_path / 'work')
    log = assert_ok(
        dist_tool(
            'dist_train.sh', R50_1X, '2', '--work-dir', work_dir,
            '--cfg-options', *tiny_model_options(2),
            *data_options(two_class_coco), 'train_cfg.max_epochs=1',
            'train_dataloader.batch_size=1',
            'default_hooks.logger.interval=1', cwd=two_class_coco))
    assert 'Distributed training: True' in log
    assert 'processes run on the CPU over gloo' in log
    # 4 images, 2 processes x 1 image per step: 2 steps per epoch.
    assert 'Epoch(train) [1][2/2]' in log
    assert 'coco/bbox_mAP:' in log
    ckpt = load_checkpoint(osp.join(work_dir, 'epoch_1.pth'))
    assert ckpt['meta']['iter'] == 2
    # Saved from the unwrapped model.
    assert not any(k.startswith('module.') for k in ckpt['state_dict'])

    out = tmp_path / 'results.json'
    log = assert_ok(
        dist_tool(
            'dist_test.sh', R50_1X, osp.join(work_dir, 'epoch_1.pth'), '2',
            '--work-dir', str(tmp_path / 'test_work'), '--out', str(out),
            '--cfg-options', *tiny_model_options(2),
            *data_options(two_class_coco), 'model.test_cfg.score_thr=0.0',
            cwd=two_class_coco))
    assert 'coco/bbox_mAP:' in log
    with open(out) as f:
        detections = json.load(f)
    # Both val images, gathered from both processes.
    assert {d['image_id'] for d in detections} == {100, 101}
    assert {d['category_id'] for d in detections} <= {1, 2}
