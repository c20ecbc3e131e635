"""The ablation and baseline configs: each trains one iteration and predicts
on the CPU with a shrunk model, and changes what it claims to change."""
import argparse
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.optim import OptimWrapper
from mmengine.structures import InstanceData

from tood.registry import MODELS
from tood.structures import DetDataSample
from tood.utils import register_all_modules

CONFIGS = osp.join(osp.dirname(__file__), '..', 'configs')
ABLATIONS = osp.join(CONFIGS, 'tood', 'ablations')
TOOD_1X = osp.join(CONFIGS, 'tood', 'tood_r50_fpn_1x_coco.py')
SHAPES = osp.join(CONFIGS, 'tood', 'tood_r18_fpn_11e_shapes.py')
BASELINES = [
    'atss/atss_r50_fpn_1x_coco.py', 'gfl/gfl_r50_fpn_1x_coco.py',
    'atss/atss_r18_fpn_11e_shapes.py', 'gfl/gfl_r18_fpn_11e_shapes.py'
]
RUNNABLE = sorted(
    osp.relpath(p, CONFIGS)
    for p in glob.glob(osp.join(ABLATIONS, '*.py'))) + BASELINES

# depth 18 at 1/8 width, 16-channel FPN and head, for every head type.
SHRINK = {
    'model.backbone.depth': 18,
    'model.backbone.stem_channels': 8,
    'model.backbone.base_channels': 8,
    'model.backbone.init_cfg': None,
    'model.neck.in_channels': [8, 16, 32, 64],
    'model.neck.out_channels': 16,
    'model.bbox_head.in_channels': 16,
    'model.bbox_head.feat_channels': 16,
    'model.bbox_head.norm_cfg.num_groups': 4,
}


def flat(node, prefix: str = '') -> dict:
    """A config as {'model.bbox_head.type': ..., ...}."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(flat(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


def change(config: str, base: str) -> dict:
    """The dotted keys whose values ``config`` changes against ``base``
    (None where it drops a key)."""
    a = flat(Config.fromfile(base).to_dict())
    b = flat(Config.fromfile(config).to_dict())
    return {k: b.get(k) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


COCO_ABLATIONS = sorted(glob.glob(osp.join(ABLATIONS, 'tood_r50_*_coco.py')))


def parse_options(text):
    """``--cfg-options`` parsed as tools/train.py parses them."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *text.split()]).cfg_options


def batch(num_classes, size=64):
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(size, size),
            ori_shape=(size, size),
            scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[4.0, 6.0, 40.0, 30.0], [20.0, 16.0, 60.0,
                                                      62.0]]),
        labels=torch.tensor([0, num_classes - 1]))
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, size, size), generator=g,
                          dtype=torch.uint8)
    return dict(inputs=[image], data_samples=[sample])


def test_readme_names_every_ablation():
    with open(osp.join(ABLATIONS, 'README.md')) as f:
        readme = f.read()
    configs = glob.glob(osp.join(ABLATIONS, '*.py'))
    assert len(COCO_ABLATIONS) == 20
    assert [c for c in configs if osp.basename(c) not in readme] == []


@pytest.mark.parametrize('config', COCO_ABLATIONS,
                         ids=lambda c: osp.basename(c)[:-3])
def test_an_ablation_changes_one_part_of_tood_r50(config):
    """Each COCO ablation changes the head or TAL's settings of TOOD R-50
    1x and nothing else; an option change applies to the shapes main job as
    it is (every key but the last already exists there)."""
    options = change(config, TOOD_1X)
    assert options
    assert all(k.startswith(('model.bbox_head.', 'model.train_cfg.'))
               for k in options), options
    if 'model.bbox_head.type' in options:
        return  # a head swap: its shapes twin is checked below
    shapes = Config.fromfile(SHAPES).to_dict()
    for key in options:
        node = shapes
        for part in key.split('.')[:-1]:
            assert part in node, f'{key} has no place in the shapes config'
            node = node[part]


def test_the_parallel_head_twins_swap_only_the_head():
    coco = change(osp.join(ABLATIONS, 'tood_r50_fpn_parallel-head_1x_coco.py'),
                  TOOD_1X)
    twin = osp.join(ABLATIONS, 'tood_r18_fpn_parallel-head_11e_shapes.py')
    shapes = change(twin, SHAPES)
    assert coco['model.bbox_head.type'] == 'ParallelHead'
    assert shapes['model.bbox_head.type'] == 'ParallelHead'
    # The same keys dropped or set; the sizes stay the shapes run's.
    assert set(shapes) == set(coco)
    assert all(k.startswith('model.bbox_head.') for k in shapes)
    assert shapes['model.bbox_head.stacked_convs'] == 4


def test_baselines_change_only_the_head():
    tood = Config.fromfile(TOOD_1X)
    for name, head, losses in (('atss/atss_r50_fpn_1x_coco.py', 'ATSSHead',
                                {'loss_cls', 'loss_bbox', 'loss_centerness'}),
                               ('gfl/gfl_r50_fpn_1x_coco.py', 'GFLHead',
                                {'loss_cls', 'loss_bbox', 'loss_dfl'})):
        cfg = Config.fromfile(osp.join(CONFIGS, name))
        assert cfg.model.bbox_head.type == head
        assert losses <= set(cfg.model.bbox_head)
        assert cfg.model.train_cfg == dict(
            assigner=dict(type='ATSSAssigner', topk=9))
        assert cfg.model.test_cfg == tood.model.test_cfg
        assert cfg.model.backbone == tood.model.backbone
        assert cfg.optim_wrapper == tood.optim_wrapper
    gfl = Config.fromfile(osp.join(CONFIGS, 'gfl/gfl_r50_fpn_1x_coco.py'))
    assert gfl.model.bbox_head.reg_max == 16
    assert gfl.model.bbox_head.loss_dfl.loss_weight == 0.25


@pytest.mark.parametrize('name', RUNNABLE)
def test_config_trains_and_predicts(name, set_epoch):
    register_all_modules()
    torch.manual_seed(0)
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    cfg.merge_from_dict(SHRINK)
    model = MODELS.build(cfg.model)
    model.init_weights()
    head = model.bbox_head
    assert type(head).__name__ == cfg.model.bbox_head.type
    # The last epoch of the schedule: TAL, unless the ablation never leaves
    # the ATSS warm-up.
    set_epoch(cfg.train_cfg.max_epochs - 1,
              max_epochs=cfg.train_cfg.max_epochs)
    criterion = head.criterion
    if hasattr(criterion, 'warming_up'):  # Task-aligned Learning
        assert criterion.warming_up() == ('atss-all-epochs' in name)

    num_classes = cfg.model.bbox_head.num_classes
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    log_vars = model.train_step(batch(num_classes), optim)
    assert 'loss_cls' in log_vars and 'loss_bbox' in log_vars
    assert all(torch.isfinite(v) for v in log_vars.values())
    assert log_vars['loss_bbox'] > 0
    changed = sum(not torch.equal(a, b)
                  for a, b in zip(before, model.parameters()))
    assert changed > 0

    model.eval()
    with torch.no_grad():
        out = model.test_step(batch(num_classes))
    pred = out[0].pred_instances
    assert pred.bboxes.shape == (len(pred), 4)
    assert len(pred) <= cfg.model.test_cfg.max_per_img
    if len(pred):
        assert pred.labels.max() < num_classes
        assert pred.bboxes.min() >= 0 and pred.bboxes.max() <= 64


def test_ablation_names_say_what_changes():
    """Every ablation differs from the 1x config in one setting, and the
    file name carries its value."""
    base = Config.fromfile(TOOD_1X)
    for config in COCO_ABLATIONS:
        for key, value in change(config, TOOD_1X).items():
            leaf = key.split('.')[-1]
            if key.startswith('model.train_cfg.') and leaf in ('alpha',
                                                               'beta',
                                                               'topk'):
                token = {'topk': 'top'}.get(leaf, leaf) + f'{value:g}'
                assert re.search(re.escape(token) + r'[-_]',
                                 osp.basename(config)), (config, token)
    assert base.model.train_cfg.assigner.topk == 13


SWEEP = osp.join(CONFIGS, '..', 'tools', 'analysis', 'shapes_ablations.sh')


def sweep_rows(epochs=3):
    """(name, config path, options) of each run of the shapes sweep."""
    with open(SWEEP) as f:
        script = f.read()
    paths = {
        '$MAIN': SHAPES,
        '$PARALLEL': osp.join(ABLATIONS,
                              'tood_r18_fpn_parallel-head_11e_shapes.py')
    }
    block = script.split('\nRUNS="', 1)[1].split('"', 1)[0]
    rows = []
    for line in block.strip().splitlines():
        name, config, change = line.split('|')
        rows.append((name, paths[config],
                     change.replace('$EPOCHS', str(epochs))))
    return rows


def test_shapes_sweep_runs_every_ablation():
    sweep = [(config, parse_options(change) if change else {})
             for _, config, change in sweep_rows(epochs=3)]
    for config in COCO_ABLATIONS:
        expected = change(config, TOOD_1X)
        if 'model.bbox_head.type' in expected:
            twin = osp.join(ABLATIONS,
                            'tood_r18_fpn_parallel-head_11e_shapes.py')
            assert (twin, {}) in sweep, config
            continue
        if expected == {'model.train_cfg.initial_epoch': 12}:
            # ATSS for the whole (short) schedule.
            expected = {'model.train_cfg.initial_epoch': 3}
        # The sweep leaves out values equal to the shapes run's defaults.
        shapes = Config.fromfile(SHAPES)
        expected = {
            k: v
            for k, v in expected.items()
            if shapes.model.train_cfg.get(k.split('.')[-1]) != v
        }
        assert (SHAPES, expected) in sweep, (config, expected)


@pytest.mark.parametrize('row', sweep_rows(), ids=lambda r: r[0])
def test_shapes_sweep_options_name_existing_keys(row):
    from tood.engine.config import unknown_cfg_keys
    name, config, change = row
    with open(SWEEP) as f:
        short = f.read().split('\nSHORT="', 1)[1].split('"', 1)[0]
    options = parse_options(
        short.replace('\\\n', '').replace('$EPOCHS', '3') + ' ' + change)
    cfg = Config.fromfile(config)
    assert unknown_cfg_keys(cfg, options) == []
    cfg.merge_from_dict(options)
    assert cfg.train_cfg.max_epochs == 3
    assert cfg.param_scheduler[1].end == 3
    # The sweep studies the paper's anchor-free head, though the main job
    # is anchor-based; only the anchor-based row differs.
    assert Config.fromfile(SHAPES).model.bbox_head.anchor_type == (
        'anchor_based')
    assert cfg.model.bbox_head.anchor_type == (
        'anchor_based' if name == 'anchor-based' else 'anchor_free')
    # Everything else is the main job's.
    assert cfg.model.bbox_head.feat_channels == Config.fromfile(
        SHAPES).model.bbox_head.feat_channels
