"""The real-data tests cannot vanish silently: they skip where the data is
absent, fail instead under TOOD_REQUIRE_SHARED_DATA=1, which CI sets, and
every one of them asks ``tests/helpers/shared_data.py`` for the data."""
import glob
import os.path as osp
import re

import pytest
from shared_data import (REQUIRE_VARIABLE, check_markers,
                         require_shared_data)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
HELPER = osp.join(REPO, 'tests', 'helpers', 'shared_data.py')


def outcome(action) -> str:
    """'skipped', 'failed' or 'ran': what ``action`` does to a test. (A
    skip must not escape: it would skip this test instead of failing
    it.)"""
    try:
        action()
    except pytest.skip.Exception:
        return 'skipped'
    except pytest.fail.Exception:
        return 'failed'
    return 'ran'


@pytest.mark.parametrize('ask', ['call', 'marker'])
def test_absent_data_skips_or_fails_when_required(ask, monkeypatch,
                                                   request):

    def needs_absent_folder():
        if ask == 'call':
            require_shared_data('no-such-folder')
        else:
            request.node.add_marker(pytest.mark.shared_data('no-such-folder'))
            check_markers(request.node)

    monkeypatch.delenv(REQUIRE_VARIABLE, raising=False)
    assert outcome(needs_absent_folder) == 'skipped'
    monkeypatch.setenv(REQUIRE_VARIABLE, '1')
    assert outcome(needs_absent_folder) == 'failed'


def test_ci_requires_the_real_data():
    with open(osp.join(REPO, '.ci', 'run')) as f:
        lines = [line.strip() for line in f]
    required = lines.index(f'export {REQUIRE_VARIABLE}=1')
    tests = next(i for i, line in enumerate(lines)
                 if line.startswith('python -m pytest'))
    assert required < tests


def test_no_test_finds_the_real_data_by_itself():
    # A string that starts a path into the shared folder: 'shared' or
    # '../shared/...' (comments and words like 'shared_store' are fine).
    path_literal = re.compile(r"""['"](\.\./)*shared['"/]""")
    offenders = []
    for path in glob.glob(osp.join(REPO, 'tests', '**', '*.py'),
                          recursive=True):
        if path == HELPER:
            continue
        with open(path) as f:
            for number, line in enumerate(f, 1):
                code = line.split('#')[0]
                if path_literal.search(code):
                    offenders.append(f'{osp.relpath(path, REPO)}:{number}')
    assert not offenders, offenders
