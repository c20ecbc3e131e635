"""Fine-tuning from a detector checkpoint with other classes: the classifier
rows mapped by class name (``LoadFromHook``), nothing else skipped, and
freezing by config."""
import logging
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from tood.apis import init_detector
from tood.datasets import COCO_CLASSES
from tood.engine import setup_checkpoint_io
from tood.engine.hooks import setup_load_from
from tood.engine.hooks.load_from_hook import adapt_classifier, match_classes
from tood.errors import ConfigError
from tood.registry import MODELS
from tood.utils import register_all_modules

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.join(HERE, '..', 'tools'))
from tool_helpers import (R50_1X, REPO, data_options,  # noqa: E402
                          make_coco, tiny_model_options)

sys.path.insert(0, osp.join(REPO, 'tools', 'model_converters'))
import tood_mmdet_to_tood  # noqa: E402


def options(lines) -> dict:
    """``k=v`` command-line options as a dict, as DictAction reads them."""
    return {k: DictAction._parse_iterable(v)
            for k, v in (line.split('=', 1) for line in lines)}


def tiny_config(num_classes: int) -> Config:
    cfg = Config.fromfile(R50_1X)
    cfg.merge_from_dict(options(tiny_model_options(num_classes)))
    return cfg


def test_class_names_match_ignoring_case_and_separators():
    assert match_classes(['Traffic Light', 'dog', 'Blood-Cell'],
                         ['person', 'traffic_light', 'DOG']) == [1, 2, None]


def test_adapt_classifier_copies_matched_rows_and_keeps_fresh_ones():
    state = {'h.weight': torch.arange(12.).reshape(4, 3),
             'h.bias': torch.arange(4.)}
    fresh = {'h.weight': torch.full((3, 3), -1.), 'h.bias': torch.full((3, ),
                                                                       -4.6)}
    line = adapt_classifier(state, fresh, 'h', ['c', 'new', 'A'],
                            ['a', 'b', 'c', 'd'])
    assert state['h.weight'].tolist() == [[6, 7, 8], [-1, -1, -1], [0, 1, 2]]
    assert state['h.bias'].tolist() == [2, pytest.approx(-4.6), 0]
    assert line == ('load_from: classifier rows copied for 2 classes '
                    '(c<-c, A<-a); initialised for 1 (new); 2 classes of the '
                    'checkpoint did not fit (b, d)')


def test_adapt_classifier_without_class_names():
    state = {'h.weight': torch.ones(3, 2), 'h.bias': torch.ones(3)}
    fresh = {'h.weight': torch.zeros(3, 2), 'h.bias': torch.zeros(3)}
    assert 'kept in their order' in adapt_classifier(
        state, fresh, 'h', ['x', 'y', 'z'], None)
    assert state['h.weight'].sum() == 6  # by position: untouched
    fresh = {'h.weight': torch.zeros(2, 2), 'h.bias': torch.zeros(2)}
    line = adapt_classifier(state, fresh, 'h', ['x', 'y'], None)
    assert 'the classifier starts fresh' in line
    assert state['h.weight'].shape == (2, 2) and state['h.weight'].sum() == 0


def test_the_same_classes_change_nothing():
    state = {'h.weight': torch.ones(2, 2), 'h.bias': torch.ones(2)}
    fresh = {'h.weight': torch.zeros(2, 2), 'h.bias': torch.zeros(2)}
    assert adapt_classifier(state, fresh, 'h', ['a', 'b'], ['a', 'b']) == ''
    assert state['h.weight'].sum() == 4


def test_freeze_backbone_and_neck():
    register_all_modules()
    cfg = tiny_config(3)
    cfg.model.frozen_parts = ('backbone', 'neck')
    model = MODELS.build(cfg.model)
    trainable = {n.split('.')[0] for n, p in model.named_parameters()
                 if p.requires_grad}
    assert trainable == {'bbox_head'}
    model.train()
    assert not model.backbone.training and not model.neck.training
    assert model.bbox_head.training
    cfg.model.frozen_parts = ('head', )
    with pytest.raises(ConfigError, match='model.frozen_parts'):
        MODELS.build(cfg.model)


# ---------------------------------------------------------------------- #
# A COCO checkpoint in MMDetection's format into a 3-class config
# ---------------------------------------------------------------------- #
@pytest.fixture(scope='module')
def coco_checkpoint(tmp_path_factory):
    """A 80-class TOOD written as MMDetection 3 writes it (random weights,
    COCO class names in the meta), converted with the project's tool."""
    register_all_modules()
    folder = tmp_path_factory.mktemp('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(tiny_config(80).model)
    model.init_weights()
    with torch.no_grad():  # spread the classifier rows apart
        model.bbox_head.tood_cls.weight.normal_(0, 0.05)
        model.bbox_head.tood_cls.bias.normal_(-3, 1)
    source = str(folder / 'mmdet.pth')
    torch.save(dict(
        state_dict=model.state_dict(),
        meta=dict(mmdet_version='3.3.0', mmengine_version='0.10.7',
                  dataset_meta=dict(classes=COCO_CLASSES))), source)
    converted = str(folder / 'converted.pth')
    tood_mmdet_to_tood.main([source, converted])
    return converted


@pytest.mark.e2e
def test_coco_rows_copied_and_scores_kept(coco_checkpoint, tmp_path):
    classes = ('Traffic Light', 'blood cell', 'DOG')  # two COCO names
    categories = [dict(id=i + 1, name=n) for i, n in enumerate(classes)]
    root = str(tmp_path / 'data')
    make_coco(root, categories, 2, 'train')
    make_coco(root, categories, 2, 'val')
    cfg = tiny_config(3)
    cfg.merge_from_dict(options(data_options(root)))
    for loader in ('train', 'val', 'test'):
        cfg[f'{loader}_dataloader'].dataset.metainfo = dict(classes=classes)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.load_from = coco_checkpoint
    setup_checkpoint_io()
    setup_load_from(cfg)
    runner = Runner.from_cfg(cfg)
    log_records = []
    handler = logging.Handler()
    handler.emit = log_records.append
    runner.logger.addHandler(handler)
    runner.train_dataloader  # noqa: B018 (built as training builds it)
    runner.model.init_weights()
    fresh = runner.model.bbox_head.tood_cls.bias[1].item()
    runner.load_checkpoint(cfg.load_from)
    new = runner.model.eval()

    source = init_detector(tiny_config(80), coco_checkpoint, 'cpu')
    light, dog = COCO_CLASSES.index('traffic light'), COCO_CLASSES.index(
        'dog')
    for key in ('weight', 'bias'):
        rows = getattr(source.bbox_head.tood_cls, key)
        got = getattr(new.bbox_head.tood_cls, key)
        assert torch.equal(got[0], rows[light])
        assert torch.equal(got[2], rows[dog])
    # The unmatched class starts as a fresh layer: the prior bias.
    assert new.bbox_head.tood_cls.bias[1].item() == fresh == pytest.approx(
        -4.595, abs=1e-3)
    # Everything else is the source's.
    for key, value in source.state_dict().items():
        if 'tood_cls' not in key:
            assert torch.equal(new.state_dict()[key], value), key
    # Before any training the new model scores those classes as the
    # source did (one conv: other output channels change the blocking of
    # the CPU convolution, hence the float tolerance).
    image = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        ours = new.network(image)[0]
        theirs = source.network(image)[0]
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a[:, [0, 2]], b[:, [light, dog]],
                                   rtol=1e-5, atol=1e-7)
    lines = [r.getMessage() for r in log_records
             if 'classifier rows copied' in r.getMessage()]
    assert lines == [
        'load_from: classifier rows copied for 2 classes (Traffic Light<-'
        'traffic light, DOG<-dog); initialised for 1 (blood cell); 78 '
        'classes of the checkpoint did not fit (person, bicycle, car, '
        'motorcycle, airplane, bus, train, truck, boat, fire hydrant, ...)'
    ]


@pytest.mark.e2e
def test_any_other_mismatch_stops_naming_the_key(coco_checkpoint, tmp_path):
    categories = [dict(id=1, name='dog')]
    root = str(tmp_path / 'data')
    make_coco(root, categories, 2, 'train')
    make_coco(root, categories, 2, 'val')
    cfg = tiny_config(1)
    cfg.merge_from_dict(options(data_options(root)))
    for loader in ('train', 'val', 'test'):
        cfg[f'{loader}_dataloader'].dataset.metainfo = dict(classes=('dog',))
    cfg.model.bbox_head.feat_channels = 32  # not the checkpoint's 16
    cfg.model.bbox_head.norm_cfg.num_groups = 4
    cfg.work_dir = str(tmp_path / 'work')
    cfg.load_from = coco_checkpoint
    setup_checkpoint_io()
    setup_load_from(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train_dataloader  # noqa: B018
    with pytest.raises(ConfigError) as info:
        runner.load_checkpoint(cfg.load_from)
    message = str(info.value)
    assert 'bbox_head.inter_convs.0.conv.weight: checkpoint (16, 16, 3, 3)' \
        in message
    assert message.count('checkpoint (') == 5  # the first five named
