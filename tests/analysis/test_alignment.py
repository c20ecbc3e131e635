"""Task-alignment analysis: the per-box computation on hand-built maps and
tools/analysis/alignment.py on a tiny model and the shapes set."""
import importlib.util
import json
import os.path as osp

import cv2
import pytest
import torch
from mmengine.config import Config

from tood.analysis.alignment import (analyse_image, flatten_outputs,
                                     markdown_table, summarize)
from tood.datasets.shapes import SHAPES_CLASSES
from tood.registry import MODELS
from tood.utils import register_all_modules

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def test_head_outputs_to_rows_and_summary():
    # Two levels: 4x4 at stride 8 and 2x2 at stride 16; two classes.
    strides = (8, 16)
    cls_scores = [torch.full((1, 2, 4, 4), 0.1), torch.full((1, 2, 2, 2), 0.1)]
    cls_scores[0][0, 1, 1, 2] = 0.9  # class 1 at point (16, 8)
    cls_scores[0][0, 0, 2, 2] = 0.95  # class 0: not the box's class
    bbox_preds = []
    for (h, w) in ((4, 4), (2, 2)):
        ys, xs = torch.meshgrid(torch.arange(h).float(),
                                torch.arange(w).float(), indexing='ij')
        # Every prior predicts a 1x1-stride box centred on its point.
        bbox_preds.append(
            torch.stack([xs - 0.5, ys - 0.5, xs + 0.5, ys + 0.5])[None])
    # ... except the level-1 prior at (16, 16), which predicts the box.
    # A box, one too small for any prior, one holding a single prior.
    gt = torch.tensor([[4., 4., 28., 28.], [1., 1., 3., 3.],
                       [13., 5., 19., 11.]])
    bbox_preds[1][0, :, 1, 1] = gt[0] / 16

    out = flatten_outputs(cls_scores, bbox_preds, strides)
    assert out.boxes.shape == (20, 4) and out.scores.shape == (20, 2)
    rows, pairs = analyse_image(out, gt, torch.tensor([1, 0, 1]))
    box, tiny, single = rows
    # 9 level-0 points (8, 16, 24)^2 and (16, 16) on level 1 are inside.
    assert box['num_candidates'] == 10
    assert box['best_score']['point'] == [16.0, 8.0]
    assert box['best_score']['level'] == 0
    assert box['best_score']['score'] == pytest.approx(0.9)
    assert box['best_iou']['point'] == [16.0, 16.0]
    assert box['best_iou']['level'] == 1
    assert box['best_score']['box'] == [12.0, 4.0, 20.0, 12.0]
    assert box['distance'] == pytest.approx(8.0)
    assert not box['aligned']
    assert box['top_iou'] == pytest.approx(64 / 576)
    assert box['max_iou'] == pytest.approx(1.0)
    assert tiny['num_candidates'] == 0 and 'distance' not in tiny
    assert single['num_candidates'] == 1 and single['aligned']
    assert pairs[0].shape == (2, 10) and pairs[1] is None

    # Only the box with several candidates counts.
    summary = summarize(rows, pairs)
    assert summary['num_gts'] == 3 and summary['num_analysed'] == 1
    assert summary['mean_distance'] == pytest.approx(8.0)
    assert summary['fraction_aligned'] == 0.0
    assert summary['mean_top_iou'] == pytest.approx(64 / 576)
    assert summary['pooled_pearson'] == pytest.approx(box['pearson'])
    table = markdown_table([('a', summary)])
    assert table.splitlines()[2].startswith('| a | 1 | 8.0 | 8.0 | 0.000 |')


TINY_SHAPES = """
_base_ = '{repo}/configs/tood/tood_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=16),
    bbox_head=dict(num_classes=8, in_channels=16, feat_channels=16,
                   stacked_convs=2,
                   norm_cfg=dict(type='GN', num_groups=4, requires_grad=True)))
# A test pipeline as the COCO configs have it: annotations loaded after
# the resize (96 -> 192 px), in the original frame.
# The tool draws the set (3 val images of 96 px) before it reads it.
data_preparer = dict(type='ShapesPreparer', data_root='{root}',
                     num_train=1, num_val=3, img_size=96)
val_dataloader = dict(dataset=dict(
    _delete_=True, type='CocoDataset', data_root='{root}',
    ann_file='annotations/instances_val.json',
    data_prefix=dict(img='val/'), test_mode=True,
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(192, 192), keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'ori_shape', 'scale_factor')),
    ]))
"""


def load_tool():
    path = osp.join(REPO, 'tools', 'analysis', 'alignment.py')
    spec = importlib.util.spec_from_file_location('alignment_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.e2e
def test_tool_writes_json_table_and_figures(tmp_path, capsys):
    register_all_modules()
    cfg_path = tmp_path / 'tiny_shapes.py'
    cfg_path.write_text(
        TINY_SHAPES.format(repo=REPO, root=tmp_path / 'shapes'))
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(cfg_path)).model)
    model.init_weights()
    ckpt = tmp_path / 'tiny.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)

    tool = load_tool()
    out_dir = tmp_path / 'out'
    tool.main([
        str(cfg_path), str(ckpt), '--num-images', '2', '--num-figures', '1',
        '--out-dir', str(out_dir), '--device', 'cpu', '--name', 'tiny'
    ])
    payload = json.loads((out_dir / 'alignment.json').read_text())
    assert set(payload) >= {'name', 'definitions', 'summary', 'rows'}
    summary, rows = payload['summary'], payload['rows']
    assert summary['num_images'] == 2

    with open(tmp_path / 'shapes' / 'annotations' / 'instances_val.json') as f:
        anns = json.load(f)['annotations']
    expected = [a for a in anns if a['image_id'] in (1, 2)]
    assert summary['num_gts'] == len(rows) == len(expected) > 0
    for row, ann in zip(rows, expected):
        assert row['image_id'] == ann['image_id']
        assert row['class_name'] == SHAPES_CLASSES[ann['category_id'] - 1]
        # Ground truth in the input frame: the 2x resize applied.
        x, y, w, h = ann['bbox']
        assert row['bbox'] == pytest.approx([2 * x, 2 * y, 2 * (x + w),
                                             2 * (y + h)])
    done = [r for r in rows if r['num_candidates'] >= 2]
    assert summary['num_analysed'] == len(done) > 0
    for row in done:
        assert row['distance'] >= 0
        assert row['aligned'] == (row['best_score']['index'] ==
                                  row['best_iou']['index'])
        assert 0 <= row['top_iou'] <= row['max_iou'] <= 1
        assert row['best_score']['score'] >= row['best_iou']['score']
        for key in ('pearson', 'spearman'):
            assert row[key] is None or -1 <= row[key] <= 1
    assert 0 <= summary['fraction_aligned'] <= 1
    assert summary['mean_top_iou'] <= summary['mean_max_iou']

    figures = list((out_dir / 'figures').glob('*_alignment.png'))
    assert len(figures) == 1
    image = cv2.imread(str(figures[0]))
    assert image is not None and image.shape[0] > 100

    md = (out_dir / 'alignment.md').read_text()
    assert md.splitlines()[2].startswith('| tiny | ')
    capsys.readouterr()
    tool.main(['--compare', str(out_dir / 'alignment.json'),
               str(out_dir / 'alignment.json'), '--out-dir', str(tmp_path)])
    table = (tmp_path / 'comparison.md').read_text().splitlines()
    assert len(table) == 4 and table[3].startswith('| tiny | ')
    assert capsys.readouterr().out.strip() == '\n'.join(table)
