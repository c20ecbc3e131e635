"""tools/analysis/operating_point.py end to end: a tiny model trained for
2 epochs on the shapes set, its thresholds from the model and from
tools/test.py's dumped predictions, written into the checkpoint and an
exported ONNX model and used by tools/infer.py --score-thr auto; and the
tool on BCCD (VOC-style, no json), where the skip is for the data."""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from shared_data import shared_path
from tool_helpers import REPO, assert_ok, python_tool, run_tool

from tood.deployment.score_thresholds import read_score_thresholds
from tood.engine import load_from_local

from robust_helpers import CONFIG, make_shapes, train_args

pytestmark = pytest.mark.e2e
TOOL = osp.join('analysis', 'operating_point.py')
BCCD = shared_path('bccd')
BCCD_CONFIG = osp.join(REPO, 'configs', 'tood', 'tood_r18_fpn_ms-20e_bccd.py')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = make_shapes(str(tmp_path_factory.mktemp('op')))
    work_dir = osp.join(root, 'work')
    assert_ok(run_tool(train_args(work_dir), cwd=root))
    return root, osp.join(work_dir, 'epoch_2.pth')


def test_thresholds_from_the_model_and_from_dumped_predictions(
        trained, tmp_path):
    root, checkpoint = trained
    log = assert_ok(python_tool(TOOL, CONFIG, checkpoint, '--out-dir',
                                str(tmp_path / 'a'), cwd=root))
    assert '| class | score thr @0.5 |' in log
    points = json.loads((tmp_path / 'a' / 'operating_points.json')
                        .read_text())
    assert set(points) == {'0.5', '0.5:0.95'}
    assert (tmp_path / 'a' / 'operating_points.png').stat().st_size > 0
    found = [row for row in points['0.5']['classes'].values()
             if row and row['score_thr'] is not None]
    assert found, points
    for row in found:
        assert row['f1'] == pytest.approx(
            2 * row['precision'] * row['recall'] /
            (row['precision'] + row['recall']))

    # The same from tools/test.py's dump, without running the model.
    preds = str(tmp_path / 'preds.pkl')
    assert_ok(python_tool('test.py', CONFIG, checkpoint, '--out', preds,
                          '--work-dir', str(tmp_path / 'test'), cwd=root))
    assert_ok(python_tool(TOOL, CONFIG, checkpoint, '--predictions', preds,
                          '--out-dir', str(tmp_path / 'b'), cwd=root))
    again = json.loads((tmp_path / 'b' / 'operating_points.json')
                       .read_text())
    assert again == points


def test_written_thresholds_drive_infer_auto(trained, tmp_path):
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    root, trained_checkpoint = trained
    checkpoint = str(tmp_path / 'model.pth')
    before = load_from_local(trained_checkpoint)
    torch.save(before, checkpoint)
    onnx_file = str(tmp_path / 'model.onnx')
    assert_ok(python_tool(osp.join('deployment', 'export_onnx.py'), CONFIG,
                          checkpoint, onnx_file, '--shape', '64', '64',
                          cwd=root))
    images = osp.join(root, 'val')

    # Nothing stored yet: auto says how to store them.
    proc = python_tool('infer.py', images, CONFIG, checkpoint, '--out-dir',
                       str(tmp_path / 'none'), '--score-thr', 'auto',
                       cwd=root)
    assert proc.returncode != 0
    assert 'operating_point.py' in proc.stdout

    log = assert_ok(python_tool(TOOL, CONFIG, checkpoint, '--write',
                                '--onnx', onnx_file, '--out-dir',
                                str(tmp_path / 'op'), cwd=root))
    assert 'written to' in log
    stored = read_score_thresholds(checkpoint)
    assert stored == read_score_thresholds(onnx_file)
    classes = stored['classes']
    assert len(classes) == len(stored['score_thr']) == 8
    # Everything else in the checkpoint is as it was.
    after = load_from_local(checkpoint)
    assert after['meta']['score_thresholds'] == stored
    assert set(after) == set(before)
    for key, value in before['state_dict'].items():
        assert torch.equal(after['state_dict'][key], value)

    for name, model in (('torch', checkpoint), ('onnx', onnx_file)):
        out_dir = tmp_path / name
        log = assert_ok(python_tool(
            'infer.py', images, CONFIG, model, '--out-dir', str(out_dir),
            '--score-thr', 'auto', '--device', 'cpu', cwd=root))
        assert 'score thresholds: ' + ', '.join(
            f'{c} {t:.3f}' for c, t in zip(classes, stored['score_thr'])
        ) in log
        results = [json.load(open(f))
                   for f in glob.glob(str(out_dir / '*.json'))]
        assert len(results) == 5
        for result in results:
            for score, label in zip(result['scores'], result['labels']):
                assert score >= round(stored['score_thr'][label], 4) - 1e-4


@pytest.mark.shared_data('bccd')
def test_on_bccd_without_an_annotation_json(tmp_path):
    """VOC data: the ground truth comes from the data samples, through
    CocoMetric's conversion. An untrained tiny model is enough to run
    it."""
    from mmengine.registry import DefaultScope

    from tood.registry import MODELS
    from tood.utils import register_all_modules
    from test_real_data_tools import TINY, TINY_MODEL
    register_all_modules()
    cfg = Config.fromfile(BCCD_CONFIG)
    cfg.merge_from_dict(TINY_MODEL)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('tood'):
        model = MODELS.build(cfg.model)
    checkpoint = str(tmp_path / 'random.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)
    log = assert_ok(python_tool(
        TOOL, BCCD_CONFIG, checkpoint, '--out-dir', str(tmp_path / 'op'),
        '--cfg-options', *TINY,
        f'test_dataloader.dataset.data_root={osp.abspath(BCCD)}/',
        'test_dataloader.dataset.indices=6',
        'test_dataloader.dataset.pipeline.1.scale=(192,192)',
        cwd=str(tmp_path)))
    points = json.loads((tmp_path / 'op' / 'operating_points.json')
                        .read_text())
    assert set(points['0.5']['classes']) == {'RBC', 'WBC', 'Platelets'}
    assert '| Platelets |' in log
