"""The assignability audit: prior counts for boxes of known sizes and
places, the pipeline variants per input scale, and
tools/analysis/assignability.py on a dataset of known boxes, the shapes
set and BCCD."""
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from shared_data import shared_path

from tood.analysis.assignability import (audit_image, level_sizes,
                                         resize_variants, summarise)
from tood.models.task_modules import ATSSAssigner

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOOL = osp.join(REPO, 'tools', 'analysis', 'assignability.py')
BCCD = shared_path('bccd')
BCCD_CONFIG = osp.join(REPO, 'configs', 'tood', 'tood_r18_fpn_ms-20e_bccd.py')
TINY_CONFIG = osp.join(REPO, 'tests', 'helpers', 'tiny_shapes_config.py')
STRIDES = (8, 16, 32, 64)


def audit(boxes, shape=(64, 64)):
    tal, atss = audit_image(
        torch.tensor(boxes, dtype=torch.float32), shape, STRIDES, 32,
        ATSSAssigner(topk=9), 8)
    return tal.tolist(), atss.tolist()


def test_a_box_smaller_than_the_stride_has_a_prior_only_over_a_point():
    tal, atss = audit([
        [1, 1, 5, 5],  # 4x4 between the stride-8 corners: nothing inside
        [6, 6, 10, 10],  # 4x4 around the point (8, 8)
        [14, 1, 18, 5],  # spans x = 16 but no multiple of 8 in y
        [4, 4, 36, 36],  # 32x32: P3 points 8..32, P4 16 and 32, P5 32
    ])
    assert tal == [[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [16, 4, 1, 0]]
    # ATSS can only use priors whose point is inside too; the 4x4 box
    # around (8, 8) gets that one prior.
    assert atss[0] == atss[2] == [0, 0, 0, 0]
    assert atss[1] == [1, 0, 0, 0]
    assert sum(atss[3]) > 0


def test_the_assigner_decides_between_gts_that_claim_one_prior():
    # Two 4x4 boxes around the same point: ATSS gives the prior to one;
    # both have it as a TAL candidate.
    tal, atss = audit([[6, 6, 10, 10], [7, 7, 11, 11]])
    assert tal == [[1, 0, 0, 0], [1, 0, 0, 0]]
    assert sorted(sum(row) for row in atss) == [0, 1]


def test_level_sizes_round_up_like_strided_convolutions():
    assert level_sizes((96, 128), STRIDES) == [(12, 16), (6, 8), (3, 4),
                                                (2, 2)]


def test_resize_variants_cover_the_ends_of_the_training_scales():
    load = dict(type='LoadImageFromFile')
    ann = dict(type='LoadAnnotations', with_bbox=True)
    pack = dict(type='PackDetInputs')
    random_resize = dict(
        type='RandomResize', scale=[(448, 448), (576, 576)], keep_ratio=True)
    variants = resize_variants([load, ann, random_resize, pack])
    assert [name for name, _ in variants] == ['448x448', '576x576']
    assert variants[1][1][2] == dict(
        type='Resize', scale=(576, 576), keep_ratio=True)

    ratio = dict(type='RandomResize', scale=(1000, 600),
                 ratio_range=(0.5, 2.0), keep_ratio=True)
    assert [n for n, _ in resize_variants([load, ann, ratio, pack])
            ] == ['500x300', '2000x1200']
    choice = dict(type='RandomChoiceResize', scales=[(320, 320), (640, 640)])
    assert [n for n, _ in resize_variants([load, ann, choice, pack])
            ] == ['320x320', '640x640']

    # A test pipeline loads the boxes after the resize (in the original
    # frame); the audit loads them first so that they are resized too.
    test = [load, dict(type='Resize', scale=(576, 576), keep_ratio=True),
            ann, pack]
    ((name, pipeline), ) = resize_variants(test)
    assert name == '576x576'
    assert [t['type'] for t in pipeline] == [
        'LoadImageFromFile', 'LoadAnnotations', 'Resize', 'PackDetInputs'
    ]
    assert resize_variants([load, ann, pack])[0][0] == 'as loaded'


def make_known_boxes(root: str) -> None:
    """A COCO set of two 64x64 images whose boxes are placed to have or
    not have a stride-8 corner inside; class 'dot' is tiny, 'blob' big."""
    os.makedirs(osp.join(root, 'images'))
    os.makedirs(osp.join(root, 'annotations'))
    boxes = {
        # x, y, w, h, category: 4x4 dots off and on the grid, 24x24 blobs.
        1: [(1, 1, 4, 4, 1), (17, 17, 4, 4, 1), (30, 30, 24, 24, 2)],
        2: [(6, 6, 4, 4, 1), (2, 34, 24, 24, 2)],
    }
    images, annotations = [], []
    for image_id, objects in boxes.items():
        name = f'{image_id}.png'
        cv2.imwrite(osp.join(root, 'images', name),
                    np.full((64, 64, 3), 127, np.uint8))
        images.append(dict(id=image_id, file_name=name, width=64,
                           height=64))
        for x, y, w, h, cat in objects:
            annotations.append(
                dict(id=len(annotations) + 1, image_id=image_id,
                     category_id=cat, bbox=[x, y, w, h], area=w * h,
                     iscrowd=0))
    with open(osp.join(root, 'annotations', 'train.json'), 'w') as f:
        json.dump(
            dict(images=images, annotations=annotations,
                 categories=[dict(id=1, name='dot'),
                             dict(id=2, name='blob')]), f)


def run_tool(*args, cwd):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, TOOL, *args], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


@pytest.mark.e2e
def test_tool_counts_the_known_boxes(tmp_path):
    make_known_boxes(str(tmp_path))
    out = tmp_path / 'out'
    log = run_tool(
        TINY_CONFIG, '--out-dir', str(out), '--cfg-options',
        'train_dataloader.dataset.ann_file=annotations/train.json',
        'train_dataloader.dataset.data_prefix.img=images/',
        'train_dataloader.dataset.pipeline.2.prob=0.0',
        'train_dataloader.dataset.metainfo.classes=[dot,blob]',
        cwd=str(tmp_path))
    (scale, ) = json.loads((out / 'assignability.json').read_text())[
        'scales']
    assert scale['scale'] == 'as loaded'
    assert scale['gts'] == 5
    # The dots at (1, 1) and (17, 17) have no stride-8 corner inside; the
    # one at (6, 6) has (8, 8).
    assert scale['tal_zero'] == scale['atss_zero'] == 2
    assert scale['by_class']['dot'] == dict(gts=3, tal_zero=2, atss_zero=2)
    assert scale['by_class']['blob'] == dict(gts=2, tal_zero=0, atss_zero=0)
    assert scale['by_size']['small'] == dict(gts=5, tal_zero=2,
                                             atss_zero=2)
    assert scale['by_size']['side < 8']['tal_zero'] == 2
    # At 1.5x they span (1.5, 7.5) and (25.5, 31.5): still no multiple of
    # 8; at 2x (2, 10) and (34, 42) do, as do (1, 5) and (17, 21) at
    # stride 4.
    what_if = {row['change']: row['tal_zero'] for row in scale['what_if']}
    assert what_if == {'input x1.5': 2, 'input x2 (or 2x2 tiles)': 0,
                       'a level of stride 4': 0}
    # 4 px sides must grow past 8 px plus the inside test's margins.
    assert scale['upscale_for_all'] == 2.01
    assert scale['levels'][0]['tal_any'] == 3
    assert (out / 'assignability.png').stat().st_size > 0
    assert '| dot | 3 | 2 | 2 |' in log


def test_summary_of_an_empty_audit_has_no_gts():
    from tood.analysis.assignability import Audit
    empty = Audit('as loaded', STRIDES, np.zeros((0, 4)), np.zeros(0, int),
                  np.zeros((0, 2), int), np.zeros((0, 4), int),
                  np.zeros((0, 4), int))
    summary = summarise(empty, ('a', ))
    assert summary['gts'] == summary['tal_zero'] == 0
    assert summary['upscale_for_all'] is None


@pytest.mark.e2e
def test_tool_on_the_shapes_val_split(tmp_path):
    from tood.datasets.shapes import generate_shapes
    generate_shapes(str(tmp_path), num_train=2, num_val=6, img_size=64,
                    max_objects=4)
    run_tool(TINY_CONFIG, '--split', 'val', '--out-dir',
             str(tmp_path / 'out'), cwd=str(tmp_path))
    (scale, ) = json.loads(
        (tmp_path / 'out' / 'assignability.json').read_text())['scales']
    assert scale['gts'] > 0
    assert sum(row['gts'] for row in scale['by_class'].values()) == \
        scale['gts']


@pytest.mark.e2e
@pytest.mark.shared_data('bccd')
def test_tool_on_bccd_at_its_training_scales(tmp_path):
    log = run_tool(
        BCCD_CONFIG, '--num-images', '20', '--out-dir', str(tmp_path),
        '--cfg-options',
        f'train_dataloader.dataset.data_root={osp.abspath(BCCD)}/',
        cwd=str(tmp_path))
    scales = json.loads((tmp_path / 'assignability.json').read_text())[
        'scales']
    assert [s['scale'] for s in scales] == ['448x448', '576x576']
    for scale in scales:
        assert set(scale['by_class']) == {'RBC', 'WBC', 'Platelets'}
        assert scale['by_class']['Platelets']['gts'] > 0
    # The same boxes at a larger input are larger.
    assert scales[0]['by_size']['small']['gts'] >= \
        scales[1]['by_size']['small']['gts']
    assert 'Input scale 448x448' in log
