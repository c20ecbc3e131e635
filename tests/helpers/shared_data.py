"""The real data beside the repository, in ``../shared/data`` (``bccd``,
``coco128``, ``cocoapi_demo``; see its README), which only the project's
shared checkout and CI have.

Every test that reads it asks for it here: with the marker
``@pytest.mark.shared_data('bccd')`` (``tests/conftest.py`` hands each
test to :func:`check_markers` before it runs), or by calling
:func:`require_shared_data` itself. Where the folder is absent the test
skips, saying so; with ``TOOD_REQUIRE_SHARED_DATA=1`` in the environment
(``.ci/run`` sets it, as CI has the data beside the clone) it fails
instead, so that these checks cannot vanish silently.
"""
import os
import os.path as osp

import pytest

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
SHARED_DATA = osp.normpath(osp.join(REPO, '..', 'shared', 'data'))
REQUIRE_VARIABLE = 'TOOD_REQUIRE_SHARED_DATA'


def shared_path(*parts: str) -> str:
    """``../shared/data/<parts>``, whether it exists or not."""
    return osp.join(SHARED_DATA, *parts)


def require_shared_data(*parts: str) -> str:
    """``../shared/data/<parts>``; where it is absent, skip the calling
    test, or fail it when ``TOOD_REQUIRE_SHARED_DATA=1``."""
    path = shared_path(*parts)
    if osp.exists(path):
        return path
    where = '/'.join(('../shared/data', ) + parts)
    if os.environ.get(REQUIRE_VARIABLE) == '1':
        pytest.fail(
            f'the real-data folder {where} is absent, and '
            f'{REQUIRE_VARIABLE}=1 asks for every real-data test to run',
            pytrace=False)
    pytest.skip(f'the real-data folder {where} is absent (only the '
                "project's shared checkout has it)")


def check_markers(item: pytest.Item) -> None:
    """:func:`require_shared_data` for each ``shared_data`` marker of a
    test."""
    for mark in item.iter_markers('shared_data'):
        require_shared_data(*mark.args)
