"""When the criterion warms up with ATSS and when it assigns with TAL: the
training progress comes from mmengine's MessageHub. Besides the decision
(``warming_up()``), the tests check which assigner and which
classification loss the losses of a batch actually ran."""
import pytest
import torch
from mmengine.structures import InstanceData

from tood.errors import ConfigError
from tood.models.criteria import TaskAlignedCriterion
from tood.structures import DetDataSample

TRAIN_CFG = dict(
    initial_epoch=2,
    initial_assigner=dict(type='ATSSAssigner', topk=9),
    assigner=dict(type='TaskAlignedAssigner', topk=13),
    alpha=1,
    beta=6)


def criterion(**train_cfg):
    return TaskAlignedCriterion(3, (8, 16), 8, dict(TRAIN_CFG, **train_cfg))


STRIDES = (8, 16)
SIZE = 64


def head_outputs(batch=2):
    """Per level (B, 3, H, W) probabilities and (B, 4, H, W) boxes in
    stride units around each prior point, as a head gives them."""
    g = torch.Generator().manual_seed(0)
    cls_scores, bbox_preds = [], []
    for stride in STRIDES:
        size = SIZE // stride
        cls_scores.append(torch.rand(batch, 3, size, size, generator=g))
        line = torch.arange(size, dtype=torch.float32)
        ys, xs = torch.meshgrid(line, line, indexing='ij')
        half = torch.rand(batch, 2, size, size, generator=g) + 0.5
        centre = torch.stack([xs, ys]).expand(batch, 2, size, size)
        bbox_preds.append(torch.cat([centre - half, centre + half], 1))
    return cls_scores, bbox_preds


def gt_samples():
    out = []
    for boxes in ([[4., 6., 30., 28.], [20., 30., 60., 62.]],
                  [[10., 10., 40., 50.]]):
        sample = DetDataSample(metainfo=dict(
            img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE),
            batch_input_shape=(SIZE, SIZE)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes),
            labels=torch.arange(len(boxes)))
        out.append(sample)
    return out


def record_runs(crit):
    """Wrap the criterion's assigners and classification losses: returns
    the list each call appends its name to ('ATSS', 'TAL', 'focal',
    'QFL')."""
    ran = []

    def wrap(owner, name, label):
        original = getattr(owner, name)

        def recorded(*args, **kwargs):
            ran.append(label)
            return original(*args, **kwargs)

        setattr(owner, name, recorded)

    wrap(crit.initial_assigner, 'assign', 'ATSS')
    wrap(crit.assigner, 'assign', 'TAL')
    wrap(crit.initial_loss_cls, 'forward', 'focal')
    wrap(crit.loss_cls, 'forward', 'QFL')
    return ran


WARMUP, TAL = ['ATSS', 'focal'], ['TAL', 'QFL']


@pytest.mark.parametrize('train_cfg, steps', [
    # initial_epoch=2: epochs 0 and 1 warm up.
    (dict(), [(0, None, WARMUP), (1, None, WARMUP), (2, None, TAL),
              (3, None, TAL)]),
    # initial_iter takes precedence over the epoch.
    (dict(initial_iter=150), [(0, 149, WARMUP), (1, 150, TAL),
                              (0, 151, TAL)]),
])
def test_the_assigner_that_runs_switches(set_epoch, train_cfg, steps):
    crit = criterion(**train_cfg)
    ran = record_runs(crit)
    outputs = head_outputs()
    for epoch, iteration, expected in steps:
        set_epoch(epoch, iteration)
        ran.clear()
        losses = crit(*outputs, gt_samples())
        assert all(torch.isfinite(v) for v in losses.values())
        # One assignment and one classification loss per batch.
        assert ran == expected, (epoch, iteration)


def test_epoch_based_switch(set_epoch):
    crit = criterion()
    for epoch, warmup in ((0, True), (1, True), (2, False), (7, False)):
        set_epoch(epoch)
        assert crit.warming_up() is warmup


def test_initial_iter_takes_precedence(set_epoch):
    crit = criterion(initial_iter=150)
    set_epoch(1, iteration=149)
    assert crit.warming_up()
    set_epoch(0, iteration=150)
    assert not crit.warming_up()


def test_a_single_epoch_warns_that_it_never_switches(set_epoch, monkeypatch):
    # IterBasedTrainLoop: one epoch, forever epoch 0 (tools/train.py stops
    # such a run before it starts; see the engine's config checks).
    from tood.models.criteria import task_aligned as task_aligned_criterion
    logged = []
    monkeypatch.setattr(task_aligned_criterion, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    set_epoch(0, iteration=10, max_epochs=1)
    assert criterion().warming_up()
    assert 'model.train_cfg.initial_iter' in logged.pop()
    assert not criterion(initial_epoch=0).warming_up()
    assert criterion(initial_iter=20).warming_up()
    assert not any('initial_iter' in m for m in logged)


def test_outside_a_runner_says_what_to_set(set_epoch):
    from mmengine.logging import MessageHub
    MessageHub.get_current_instance().pop_info('iter', None)
    with pytest.raises(RuntimeError, match="update_info\\('epoch'"):
        criterion().warming_up()


def test_alpha_and_beta_reach_the_assigner_at_build():
    crit = criterion(alpha=0.5, beta=4)
    assert (crit.assigner.alpha, crit.assigner.beta) == (0.5, 4)
    with pytest.raises(ConfigError, match='model.train_cfg.assigner.alpha'):
        criterion(alpha=0.5, assigner=dict(TRAIN_CFG['assigner'], alpha=1))


@pytest.mark.parametrize('key, value', [('initial_epoch', -1),
                                        ('initial_iter', 2.5)])
def test_bad_warmup_lengths(key, value):
    with pytest.raises(ConfigError, match=f'model.train_cfg.{key}'):
        criterion(**{key: value})
