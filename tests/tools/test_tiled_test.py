"""tools/test.py --tile and tools/infer.py --tile on large canvases of
small shapes, with a tiny untrained model."""
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from tool_helpers import REPO, assert_ok, python_tool

from tood.datasets import ShapesPreparer
from tood.registry import MODELS
from tood.utils import register_all_modules

pytestmark = pytest.mark.e2e

LARGE = osp.join(REPO, 'configs', 'tood', 'tood_r18_fpn_11e_shapes-large.py')
TINY = [
    'model.backbone.base_channels=8', 'model.backbone.stem_channels=8',
    'model.neck.in_channels=[8,16,32,64]', 'model.neck.out_channels=16',
    'model.bbox_head.in_channels=16', 'model.bbox_head.feat_channels=16',
    'model.bbox_head.stacked_convs=2',
    'model.bbox_head.norm_cfg.num_groups=4', 'model.channels_last=False',
    'model.test_cfg.score_thr=0.0'
]


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A tiny checkpoint of the config's network, and a config drawing two
    512x512 canvases into the temporary folder."""
    folder = tmp_path_factory.mktemp('tiled')
    root = str(folder / 'large') + '/'
    options = TINY + [
        f'data_preparer.1.data_root={root}', 'data_preparer.1.num_val=2',
        'data_preparer.1.img_size=512',
        f'test_dataloader.dataset.data_root={root}',
        f'test_evaluator.ann_file={root}annotations/instances_val.json'
    ]
    ShapesPreparer(root, num_train=0, num_val=2, img_size=512,
                   max_objects=40, max_object_size=48)()
    register_all_modules()
    cfg = Config.fromfile(LARGE)
    from mmengine.config import DictAction
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in (
        o.split('=', 1) for o in options)})
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    checkpoint = str(folder / 'tiny.pth')
    torch.save(dict(state_dict=model.state_dict(), meta={}), checkpoint)
    return folder, checkpoint, options


def test_test_py_evaluates_in_tiles(setup):
    folder, checkpoint, options = setup
    whole = assert_ok(python_tool(
        'test.py', LARGE, checkpoint, '--work-dir', str(folder / 'w1'),
        '--cfg-options', *options, cwd=str(folder), timeout=600))
    assert 'coco/bbox_mAP' in whole and 'tiled inference' not in whole
    tiled = assert_ok(python_tool(
        'test.py', LARGE, checkpoint, '--tile', '--work-dir',
        str(folder / 'w2'), '--cfg-options', *options, cwd=str(folder),
        timeout=600))
    # The tile is the test pipeline's 256x256: 3x3 tiles of a 512 canvas.
    assert 'tiled inference: tiles of 256x256, overlap 0.25, whole image on' \
        in tiled
    assert 'coco/bbox_mAP' in tiled


def test_infer_py_in_tiles(setup):
    folder, checkpoint, options = setup
    images = folder / 'large' / 'val'
    out = folder / 'out'
    log = assert_ok(python_tool(
        'infer.py', str(images), LARGE, checkpoint, '--tile', '128',
        '--tile-overlap', '0.5', '--no-whole', '--score-thr', '0',
        '--out-dir', str(out), '--cfg-options', *options, cwd=str(folder),
        timeout=600))
    assert 'tiles of 128x128, overlap 0.5' in log
    found = json.loads((out / '000000.json').read_text())
    assert found['width'] == 512 and found['bboxes']
    assert all(0 <= v <= 512 for box in found['bboxes'] for v in box)
