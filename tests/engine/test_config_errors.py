"""Config mistakes end with a message naming the key, not a traceback."""
import glob
import os.path as osp
import sys
from types import SimpleNamespace

import pytest
import torch.nn as nn
from mmengine.config import Config
from robust_helpers import CONFIG, DRIVER, REPO, finish, make_shapes, start

from tood.datasets import CocoDataset
from tood.engine import check_config, check_required_keys, explain_error
from tood.engine.hooks import NumClassCheckHook
from tood.errors import ConfigError
from tood.registry import MODELS
from tood.utils import register_all_modules

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'tools'))
import train  # noqa: E402


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes(str(tmp_path_factory.mktemp('shapes')))


@pytest.mark.e2e
def test_unknown_type_through_train_py(shapes, tmp_path):
    rc, out = finish(
        start([
            sys.executable, DRIVER, CONFIG, '--work-dir',
            str(tmp_path), '--cfg-options', 'model.backbone.type=ResNt'
        ], shapes))
    assert rc == 1, out[-3000:]
    assert 'Traceback' not in out
    assert "Unknown type 'ResNt' (at model.backbone)" in out
    closest = out.split('Closest registered names: ')[1].split('.')[0]
    assert closest.split(', ')[0] == 'ResNet'
    assert 'ResNeXt' in closest


def config_error(cfg: Config) -> str:
    """The message check_config stops ``cfg`` with (tools/train.py and
    tools/test.py run it before they build anything)."""
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert explain_error(info.value) == str(info.value)
    return str(info.value)


def test_unknown_type_lists_the_closest_names_of_its_registry():
    cfg = Config.fromfile(CONFIG)
    cfg.train_dataloader.dataset.pipeline[0].type = 'LoadImageFromFlie'
    message = config_error(cfg)
    assert message.startswith("Unknown type 'LoadImageFromFlie' (at "
                               'train_dataloader.dataset.pipeline.0)')
    assert 'as a transform in the tood scope' in message
    assert message.split('Closest registered names: ')[1].startswith(
        'LoadImageFromFile')


def test_missing_and_unexpected_keys_of_a_module():
    cfg = Config.fromfile(CONFIG)
    del cfg.model.bbox_head['num_classes']
    message = config_error(cfg)
    assert message == ('The config of TOODHead (at model.bbox_head) lacks '
                       "the required key(s) 'num_classes'.")
    cfg = Config.fromfile(CONFIG)
    cfg.model.neck.out_channel = 16
    message = config_error(cfg)
    assert "FPN (at model.neck) has the key 'out_channel'" in message
    assert 'out_channels' in message  # what it takes, closest first


def test_every_problem_is_named_and_injected_keys_are_not_required():
    """The detector gives the head train_cfg and test_cfg; the runner
    gives loops their runner and dataloader, samplers their dataset: none
    of them is reported missing."""
    cfg = Config.fromfile(CONFIG)
    cfg.model.train_cfg.assigner.topkk = 9
    cfg.default_hooks.logger.intervall = 1
    cfg.val_evaluator.ann_flie = 'x.json'
    lines = config_error(cfg).split('\n')
    # Nothing about train_cfg, test_cfg, runner, dataloader or dataset.
    assert len(lines) == 3, lines
    for where in ("(at model.train_cfg.assigner) has the key 'topkk'",
                  "(at default_hooks.logger) has the key 'intervall'",
                  "(at val_evaluator) has the key 'ann_flie'"):
        assert sum(where in line for line in lines) == 1, where


def test_the_criterion_says_whether_its_warmup_can_end():
    register_all_modules()
    cfg = Config.fromfile(CONFIG)
    criterion = MODELS.build(cfg.model).bbox_head.criterion
    assert criterion.warmup_problem(iteration_based=False) is None
    message = criterion.warmup_problem(iteration_based=True)
    assert message.startswith('model.train_cfg.initial_epoch=1 counts the '
                              'ATSS warm-up in epochs')
    assert 'Set model.train_cfg.initial_iter' in message
    for fix in (dict(initial_iter=3), dict(initial_epoch=0)):
        fixed = Config.fromfile(CONFIG)
        fixed.model.train_cfg.update(fix)
        criterion = MODELS.build(fixed.model).bbox_head.criterion
        assert criterion.warmup_problem(iteration_based=True) is None


@pytest.mark.e2e
def test_a_warmup_in_epochs_under_an_iteration_based_loop_is_refused(
        shapes, tmp_path):
    config = tmp_path / 'iterations.py'
    config.write_text(
        f'_base_ = {CONFIG!r}\n'
        "train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', "
        'max_iters=6, val_interval=6)\n')
    rc, out = finish(start([sys.executable, DRIVER, str(config),
                            '--work-dir', str(tmp_path / 'work')], shapes))
    assert rc == 1, out[-3000:]
    assert 'Traceback' not in out
    assert 'model.train_cfg.initial_epoch=1 counts the ATSS warm-up' in out


@pytest.mark.parametrize(
    'config', sorted(glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                               recursive=True)))
def test_every_shipped_config_passes_the_check(config):
    if '_base_' in config:
        pytest.skip('a fragment, checked through the configs using it')
    check_config(Config.fromfile(config))


def test_missing_top_level_keys_through_train_py(tmp_path):
    config = tmp_path / 'partial.py'
    config.write_text("default_scope = 'tood'\nmodel = dict(type='TOOD')\n"
                      "val_cfg = dict(type='ValLoop')\n")
    with pytest.raises(SystemExit) as info:
        train.main([str(config), '--work-dir', str(tmp_path / 'work')])
    message = str(info.value.code)
    assert message.startswith(f'The config {config} lacks required key(s)')
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper',
                'val_dataloader', 'val_evaluator'):
        assert key in message
    with pytest.raises(ConfigError, match='test_evaluator'):
        check_required_keys(Config.fromfile(str(config)), 'test')


class TinyDetector(nn.Module):

    def __init__(self, num_classes):
        super().__init__()
        self.bbox_head = nn.Module()
        self.bbox_head.num_classes = num_classes


def test_num_classes_must_match_the_dataset(shapes):
    dataset = CocoDataset(
        ann_file=osp.join(shapes, 'annotations', 'instances_train.json'),
        data_prefix=dict(img=''))
    loader = SimpleNamespace(dataset=dataset)
    hook = NumClassCheckHook()
    hook.before_train(
        SimpleNamespace(model=TinyDetector(8), train_dataloader=loader))
    with pytest.raises(ConfigError) as info:
        hook.before_val(
            SimpleNamespace(model=TinyDetector(80), val_dataloader=loader))
    message = str(info.value)
    assert message.startswith('model.bbox_head.num_classes is 80 but the '
                              'val dataset')
    assert 'instances_train.json) has 8 classes' in message
    assert 'Set model.bbox_head.num_classes=8' in message
    assert explain_error(info.value) == message
