"""tools/train.py and tools/test.py end to end on a tiny COCO-format set."""
import os.path as osp
import pickle
import shutil
import sys

import cv2
import numpy as np
import pytest
from tool_helpers import (R50_1X, REPO, assert_ok, data_options,
                          load_checkpoint, python_tool, run_tool,
                          tiny_model_options)

# Trainings, exports or tools in their own processes: seconds to
# minutes each (pytest -m "not e2e" leaves them out).
pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def trained(two_class_coco, tmp_path_factory):
    """One epoch (2 iterations) of a ResNet-18 TOOD, validated at its end."""
    work_dir = str(tmp_path_factory.mktemp('train') / 'work')
    proc = python_tool(
        'train.py', R50_1X, '--work-dir', work_dir, '--cfg-options',
        *tiny_model_options(2), *data_options(two_class_coco),
        'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1',
        'optim_wrapper.optimizer.lr=0.005', 'not_a_key.typo=1',
        cwd=two_class_coco)
    return work_dir, assert_ok(proc)


def test_train_writes_a_checkpoint_with_the_overrides(trained):
    work_dir, log = trained
    ckpt = load_checkpoint(osp.join(work_dir, 'epoch_1.pth'))
    assert ckpt['meta']['epoch'] == 1
    assert ckpt['meta']['iter'] == 2
    assert ckpt['meta']['dataset_meta']['classes'] == ('red', 'green')
    state = ckpt['state_dict']
    # --cfg-options took effect: ResNet-18 (basic blocks have no conv3),
    # 16 FPN channels, 2 classes.
    assert 'backbone.layer1.0.conv2.weight' in state
    assert not any('conv3' in key for key in state if 'backbone' in key)
    assert state['neck.fpn_convs.0.conv.weight'].shape[0] == 16
    assert state['neck.lateral_convs.0.conv.weight'].shape[1] == 128
    assert ckpt['optimizer']['param_groups'][0]['initial_lr'] == 0.005

    # The unknown key is named; the known ones are not.
    assert 'not_a_key.typo' in log
    assert 'keys that are not in the config' in log
    warning = log[log.index('keys that are not in the config'):][:400]
    assert 'model.backbone.depth' not in warning

    # Training really ran and validation produced COCO metrics.
    assert 'Epoch(train) [1][2/2]' in log
    assert 'coco/bbox_mAP:' in log
    assert osp.isfile(osp.join(work_dir, 'tood_r50_fpn_1x_coco.py'))


def test_test_tool_evaluates_dumps_and_draws(trained, two_class_coco,
                                             tmp_path):
    work_dir, _ = trained
    out = tmp_path / 'preds.pkl'
    show_dir = tmp_path / 'show'
    proc = python_tool(
        'test.py', R50_1X, osp.join(work_dir, 'epoch_1.pth'), '--work-dir',
        str(tmp_path / 'test_work'), '--out', str(out), '--show-dir',
        str(show_dir), '--cfg-options', *tiny_model_options(2),
        *data_options(two_class_coco), 'model.test_cfg.score_thr=0.0',
        'default_hooks.visualization.score_thr=0.0',
        cwd=two_class_coco)
    log = assert_ok(proc)
    assert 'coco/bbox_mAP:' in log and 'coco/bbox_mAP_50:' in log
    # The progress bar reached the end of the 2 test images.
    assert '] 2/2,' in log

    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 2
    assert {p['img_id'] for p in predictions} == {100, 101}
    for pred in predictions:
        boxes = pred['pred_instances']['bboxes']
        assert boxes.shape[1] == 4 and 0 < len(boxes) <= 100
        assert pred['pred_instances']['labels'].max() < 2

    drawn = sorted(p.name for p in show_dir.iterdir())
    assert drawn == ['val_000.jpg', 'val_001.jpg']
    original = cv2.imread(osp.join(two_class_coco, 'images', 'val_000.jpg'))
    image = cv2.imread(str(show_dir / 'val_000.jpg'))
    assert image.shape == original.shape
    # Boxes were drawn on it.
    assert np.abs(image.astype(int) - original).max() > 50


def test_resume_continues_from_the_checkpoint(trained, two_class_coco,
                                              tmp_path):
    work_dir, _ = trained
    resumed_dir = str(tmp_path / 'work')
    shutil.copytree(work_dir, resumed_dir)
    proc = python_tool(
        'train.py', R50_1X, '--work-dir', resumed_dir, '--resume',
        osp.join(resumed_dir, 'epoch_1.pth'), '--cfg-options',
        *tiny_model_options(2), *data_options(two_class_coco),
        'train_cfg.max_epochs=2', 'default_hooks.logger.interval=1',
        'optim_wrapper.optimizer.lr=0.005',
        # The resumed epoch (index 1) trains with task-aligned assignment.
        'model.train_cfg.initial_epoch=1', cwd=two_class_coco)
    log = assert_ok(proc)
    assert 'resumed epoch: 1, iter: 2' in log
    assert 'Epoch(train) [1]' not in log
    assert 'Epoch(train) [2][2/2]' in log
    ckpt = load_checkpoint(osp.join(resumed_dir, 'epoch_2.pth'))
    assert ckpt['meta']['epoch'] == 2 and ckpt['meta']['iter'] == 4


def test_train_without_dataset_says_where_it_looked(tmp_path):
    proc = python_tool('train.py', R50_1X, cwd=str(tmp_path))
    assert proc.returncode != 0
    log = proc.stdout
    assert 'Traceback' not in log
    assert osp.join(str(tmp_path), 'data', 'coco', 'annotations',
                    'instances_train2017.json') in log
    assert 'cocodataset.org' in log


OFFLINE_TRAIN = '''
import runpy, sys, urllib.error
import torch.hub


def offline(url, dst, *args, **kwargs):
    raise urllib.error.URLError('[Errno -3] Temporary failure in name '
                                'resolution')


# The machine has no network: every download fails as it would there.
torch.hub.download_url_to_file = offline
sys.argv = ['tools/train.py', *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def test_train_offline_names_the_weights_the_cache_and_the_ways_on(
        two_class_coco, tmp_path):
    """The config's torchvision://resnet50 backbone weights cannot be
    fetched (no test touches the network): the run stops with a message,
    not a URLError traceback."""
    options = [o for o in tiny_model_options(2) if 'init_cfg' not in o]
    torch_home = tmp_path / 'torch_home'
    proc = run_tool(
        [sys.executable, '-c', OFFLINE_TRAIN, R50_1X, '--work-dir',
         str(tmp_path / 'work'), '--cfg-options', *options,
         *data_options(two_class_coco)],
        cwd=REPO, env=dict(TORCH_HOME=str(torch_home)))
    log = proc.stdout
    assert proc.returncode == 1, log[-3000:]
    assert 'Traceback' not in log
    assert ('Could not download the weights torchvision://resnet50 '
            '(https://') in log
    assert str(torch_home / 'hub' / 'checkpoints' / 'resnet50-') in log
    assert 'Temporary failure in name resolution' in log
    assert '--cfg-options model.backbone.init_cfg.checkpoint=' in log
    assert '--cfg-options model.backbone.init_cfg=None' in log
