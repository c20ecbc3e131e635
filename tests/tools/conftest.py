"""Fixtures shared by the tool tests."""
import pytest
import torch
from tool_helpers import make_coco


@pytest.fixture(scope='session')
def two_class_coco(tmp_path_factory) -> str:
    """Train (4 images) and val (2 images) with categories 1 and 2."""
    root = str(tmp_path_factory.mktemp('coco'))
    categories = [dict(id=1, name='red'), dict(id=2, name='green')]
    make_coco(root, categories, 4, 'train', seed=0)
    make_coco(root, categories, 2, 'val', seed=1)
    return root


@pytest.fixture
def keep_threads():
    """Give the test process its thread count back: the benchmark tool sets
    its own (one thread for the assign task)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
