"""When the criterion warms up with ATSS and when it assigns with TAL: the
training progress comes from mmengine's MessageHub."""
import pytest

from tood.errors import ConfigError
from tood.models.criteria import TaskAlignedCriterion

TRAIN_CFG = dict(
    initial_epoch=2,
    initial_assigner=dict(type='ATSSAssigner', topk=9),
    assigner=dict(type='TaskAlignedAssigner', topk=13),
    alpha=1,
    beta=6)


def criterion(**train_cfg):
    return TaskAlignedCriterion(3, (8, 16), 8, dict(TRAIN_CFG, **train_cfg))


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
