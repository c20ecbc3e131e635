"""Fixtures shared by the whole suite; ``tests/helpers`` (a tiny config,
the train driver, shared run helpers) is importable from every test."""
import logging
import os.path as osp
import sys
from typing import Callable, Optional

import pytest
from mmengine.logging import MessageHub, MMLogger

PROGRESS_KEYS = ('epoch', 'iter', 'max_epochs')
sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), 'helpers'))
from shared_data import check_markers  # noqa: E402


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.shared_data('bccd')``: the test needs that folder of
    the real data (see ``tests/helpers/shared_data.py``)."""
    check_markers(item)


@pytest.fixture
def set_epoch() -> Callable[..., None]:
    """Tell the model the training progress as a runner's train loop does,
    through mmengine's MessageHub: ``set_epoch(4)`` (iteration 100 per
    epoch, 12 epochs unless given). Restored after the test."""
    hub = MessageHub.get_current_instance()
    saved = {key: hub.get_info(key) for key in PROGRESS_KEYS}

    def set_progress(epoch: int, iteration: Optional[int] = None,
                     max_epochs: int = 12) -> None:
        hub.update_info('epoch', epoch)
        hub.update_info('iter',
                        epoch * 100 if iteration is None else iteration)
        hub.update_info('max_epochs', max_epochs)

    yield set_progress
    for key, value in saved.items():
        if value is None:
            hub.pop_info(key, None)
        else:
            hub.update_info(key, value)


@pytest.fixture
def log_records() -> list:
    """Every record that reaches mmengine's current logger during the test
    (DEBUG and up). Read from a handler of our own: the logger's stream
    handler keeps whichever stdout the first test that created it had, so
    capsys cannot see it."""
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old_level)
