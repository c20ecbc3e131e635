"""tools/analysis/get_flops.py, tools/analysis/collect_results.py and the
library functions behind them."""
import json
import os
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from tool_helpers import REPO, assert_ok, run_tool

from tood.analysis.complexity import (config_complexity,
                                      count_complexity, eval_image_shape)
from tood.analysis.results import (collect_run, markdown_table,
                                   training_seconds)
from tood.apis import init_detector
from tood.visualization import ScalarLog
from tood.models.layers.dcn import ModulatedDeformConv2d

# Trainings, exports or tools in their own processes: seconds to
# minutes each (pytest -m "not e2e" leaves them out).
pytestmark = pytest.mark.e2e

TOOLS = osp.join(REPO, 'tools', 'analysis')
TOOD_1X = osp.join(REPO, 'configs', 'tood', 'tood_r50_fpn_1x_coco.py')
SHAPES = osp.join(REPO, 'configs', 'tood', 'tood_r18_fpn_11e_shapes.py')
TINY = {
    'model.backbone.depth': 18,
    'model.backbone.stem_channels': 8,
    'model.backbone.base_channels': 8,
    'model.neck.in_channels': [8, 16, 32, 64],
    'model.neck.out_channels': 16,
    'model.bbox_head.in_channels': 16,
    'model.bbox_head.feat_channels': 16,
    'model.bbox_head.norm_cfg.num_groups': 4,
}


def tiny_cfg(path=TOOD_1X):
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(TINY)
    return cfg


class TwoConvs(torch.nn.Module):
    """forward(inputs, mode) like the detector; known FLOPs."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.dcn = ModulatedDeformConv2d(8, 4, 3, padding=1)

    def forward(self, inputs, mode='tensor'):
        return self.dcn(self.stem(inputs))


def test_flops_of_known_convolutions():
    model = TwoConvs()
    result = count_complexity(model, (16, 16))
    stem = 2 * 3 * 8 * 9 * 16 * 16
    # the DCN's offset/mask conv (8 -> 27 channels) and its deformable
    # conv counted as a plain 3x3 conv 8 -> 4
    offsets = 2 * 8 * 27 * 9 * 16 * 16
    deform = 2 * 8 * 4 * 9 * 16 * 16
    assert result.flops == stem + offsets + deform
    assert result.deformable_flops == deform
    assert result.parts == {'stem': stem, 'dcn': offsets + deform}
    assert result.params == sum(p.numel() for p in model.parameters())
    assert result.input_shape == (16, 16)


def test_config_complexity_pads_like_the_preprocessor():
    cfg = tiny_cfg()
    result = config_complexity(cfg, (60, 70))
    assert result.input_shape == (64, 96)
    assert result.params == sum(
        p.numel() for p in init_detector(cfg, None, 'cpu').parameters())
    assert set(result.parts) == {'backbone', 'neck', 'bbox_head'}
    assert sum(result.parts.values()) == result.flops
    # FLOPs grow with the image area (the convs dominate)
    bigger = config_complexity(cfg, (128, 192))
    assert bigger.flops == pytest.approx(4 * result.flops, rel=0.1)


def test_eval_image_shape():
    assert eval_image_shape(Config.fromfile(TOOD_1X)) == (800, 1333)
    assert eval_image_shape(Config.fromfile(SHAPES)) == (256, 256)


def test_paper_size_parameter_count():
    # whole TOOD R-50: about 32.2 M (published implementations)
    model = init_detector(TOOD_1X, None, 'cpu')
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 32.2e6) < 0.1e6, n


def test_get_flops_cli(tmp_path):
    options = [f'{k}={v}'.replace(' ', '') for k, v in TINY.items()]
    proc = run_tool([
        sys.executable,
        osp.join(TOOLS, 'get_flops.py'), TOOD_1X, '--shape', '60', '70',
        '--cfg-options', *options
    ], cwd=str(tmp_path))
    out = assert_ok(proc)
    expected = config_complexity(tiny_cfg(), (60, 70))
    assert 'input: 1x3x64x96' in out
    assert f'params: {expected.params / 1e6:.2f} M ({expected.params})' in out
    assert f'({expected.flops})' in out
    assert '2 FLOPs per multiply-add' in out
    assert 'deformable' in out


# ------------------------------------------------------------ results


def fake_work_dir(root, name, val_maps, times=(0.5, 0.7), ap_l=0.3):
    """A work dir like tools/train.py leaves: the dumped config and one
    run's scalars (two training records per epoch, 10 iterations each)."""
    work_dir = osp.join(str(root), name)
    run = osp.join(work_dir, '20240101_000000', 'vis_data')
    os.makedirs(run)
    tiny_cfg().dump(osp.join(work_dir, f'{name}_config.py'))
    it = 0
    with open(osp.join(run, 'scalars.json'), 'w') as f:
        for epoch, ap in enumerate(val_maps, 1):
            for t in times:
                it += 10
                f.write(json.dumps(dict(loss=1.0, time=t, epoch=epoch,
                                        iter=it, step=it)) + '\n')
            f.write(json.dumps({
                'coco/bbox_mAP': ap, 'coco/bbox_mAP_50': ap + 0.2,
                'coco/bbox_mAP_75': ap + 0.05, 'coco/bbox_mAP_s': 0.1,
                'coco/bbox_mAP_m': 0.2, 'coco/bbox_mAP_l': ap_l,
                'step': epoch
            }) + '\n')
    return work_dir


def test_training_seconds_sums_iteration_times():
    log = ScalarLog('x', train=[
        dict(iter=10, time=0.5), dict(iter=30, time=1.0),
        dict(iter=35, time=2.0)
    ])
    assert training_seconds(log) == 10 * 0.5 + 20 * 1.0 + 5 * 2.0
    assert training_seconds(ScalarLog('y')) is None


def test_collect_run_and_table(tmp_path):
    work_dir = fake_work_dir(tmp_path, 'run_a', [0.30, 0.42, 0.40])
    result = collect_run(work_dir, count_flops=False)
    assert result.name == 'run_a' and result.config == 'run_a_config'
    assert result.epoch == 3
    assert result.metrics['AP'] == pytest.approx(0.40)
    assert result.metrics['AP50'] == pytest.approx(0.60)
    assert result.best == (pytest.approx(0.42), 2)
    # 3 epochs x (10 x 0.5 + 10 x 0.7) seconds
    assert result.train_seconds == pytest.approx(36.0)
    assert result.params is None
    table = markdown_table([result])
    lines = table.splitlines()
    assert lines[0].startswith('| run | config | epoch | AP | AP50 | AP75')
    assert lines[2] == ('| run_a | run_a_config | 3 | 40.0 | 60.0 | 45.0 | '
                        '10.0 | 20.0 | 30.0 | 42.0 (2) | - | - | 0:00:36 |')
    # COCO's -1 (no large objects) is shown as missing
    no_large = collect_run(
        fake_work_dir(tmp_path, 'run_b', [0.3], ap_l=-1.0), False)
    assert 'APl' not in no_large.metrics
    row = markdown_table([no_large]).splitlines()[2].split(' | ')
    assert row[8] == '-'


def test_collect_counts_each_model_once(tmp_path):
    cache = {}
    a = collect_run(fake_work_dir(tmp_path, 'a', [0.1]), True, cache)
    b = collect_run(fake_work_dir(tmp_path, 'b', [0.2]), True, cache)
    assert len(cache) == 1
    expected = config_complexity(tiny_cfg())
    assert a.params == b.params == expected.params
    assert a.flops == expected.flops
    # the test pipeline resizes to 1333x800, padded to 1344x800
    assert a.input_shape == (800, 1344)


def test_collect_results_cli(tmp_path):
    fake_work_dir(tmp_path, 'run_a', [0.30, 0.42])
    fake_work_dir(tmp_path, 'run_b', [0.25])
    os.makedirs(osp.join(str(tmp_path), 'not_a_run'))
    out_file = osp.join(str(tmp_path), 'tables', 'results.md')
    proc = run_tool([
        sys.executable,
        osp.join(TOOLS, 'collect_results.py'),
        *[osp.join(str(tmp_path), n) for n in ('run_a', 'run_b',
                                                'not_a_run')],
        '--out', out_file, '--no-flops'
    ], cwd=str(tmp_path))
    out = assert_ok(proc)
    assert 'skipped' in out and 'not_a_run' in out
    with open(out_file) as f:
        table = f.read()
    rows = [line for line in table.splitlines() if line.startswith('| run_')]
    assert len(rows) == 2
    assert rows[0].split(' | ')[3] == '42.0'
    assert rows[1].split(' | ')[3] == '25.0'
    assert 'Training time' in table
