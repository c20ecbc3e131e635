"""The user docs render and point at what exists: code fences balanced,
every table row as wide as its header, every relative link and every
repository path a doc names present, no path outside the repository."""
import os.path as osp
import re
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

REPO = Path(osp.dirname(osp.abspath(__file__))).parent
DOCS = sorted([REPO / 'README.md', *(REPO / 'docs').glob('*.md'),
               *(REPO / 'configs').rglob('*.md')])
# Top-level folders a path in a doc may start with.
REPO_FOLDERS = ('configs', 'docs', 'tests', 'tood', 'tools', '.ci')
FENCE = re.compile(r'^\s*(```|~~~)')
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')
CODE_SPAN = re.compile(r'`([^`\n]+)`')


def prose_lines(path: Path) -> Iterator[Tuple[int, str]]:
    """(number, line) of the lines outside code fences."""
    inside = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            yield number, line


def anchors(path: Path) -> List[str]:
    """GitHub's anchors of the headings of ``path``."""
    out = []
    for _, line in prose_lines(path):
        if line.startswith('#'):
            title = line.lstrip('#').strip().lower()
            title = re.sub(r'[^\w\- ]', '', title)
            out.append(title.replace(' ', '-'))
    return out


def cells(row: str) -> int:
    """Columns of a Markdown table row (escaped pipes and pipes inside code
    spans do not separate cells)."""
    row = CODE_SPAN.sub('code', row.replace('\\|', ''))
    return len(row.strip().strip('|').split('|'))


@pytest.mark.parametrize('path', DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_code_fences_are_balanced(path):
    fences = [n for n, line in enumerate(path.read_text().splitlines(), 1)
              if FENCE.match(line)]
    assert len(fences) % 2 == 0, f'unclosed fence; fences at {fences}'


@pytest.mark.parametrize('path', DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_table_rows_have_the_header_width(path):
    bad, width = [], None
    for number, line in prose_lines(path):
        if not line.lstrip().startswith('|'):
            width = None
            continue
        if width is None:
            width = cells(line)
        elif cells(line) != width:
            bad.append(f'line {number}: {cells(line)} cells, header {width}')
    assert not bad, '\n'.join(bad)


@pytest.mark.parametrize('path', DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_exist(path):
    bad = []
    for number, line in prose_lines(path):
        for target in LINK.findall(CODE_SPAN.sub('', line)):
            if re.match(r'[a-z]+://|mailto:', target):
                continue
            file, _, anchor = target.partition('#')
            where = path if not file else (path.parent / file)
            if not where.exists():
                bad.append(f'line {number}: {target} does not exist')
            elif anchor and where.suffix == '.md' and \
                    anchor not in anchors(where):
                bad.append(f'line {number}: no heading #{anchor} in '
                           f'{where.relative_to(REPO)}')
    assert not bad, '\n'.join(bad)


def named_paths(text: str) -> Iterator[str]:
    """Repository paths a doc names: words that start with a top-level
    folder of the repository, in code or prose, without placeholders."""
    for word in re.findall(r'[\w./\-]+', text):
        word = word.rstrip('.,:;')
        top = word.split('/')[0]
        if top in REPO_FOLDERS and '/' in word and \
                not re.search(r'[<>{}*]|\.\.\.', word):
            yield word


@pytest.mark.parametrize('path', DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_named_repository_paths_exist(path):
    missing = sorted({
        f'{word}' for word in named_paths(path.read_text())
        if not (REPO / word).exists()
    })
    assert not missing, f'named in {path.name} but not in the repository: ' \
        f'{missing}'


@pytest.mark.parametrize('path', DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_path_outside_the_repository(path):
    # A regular expression, not a path: the tests find the shared data
    # only through tests/shared_data.py.
    assert not re.search(r'\.\./shared|/work/', path.read_text())


def test_the_checks_can_fail(tmp_path):
    """Each check finds the defect it is for."""
    doc = tmp_path / 'bad.md'
    doc.write_text('| a | b |\n|---|---|\n| 1 | 2 | 3 |\n\n```bash\nx\n'
                   '[gone](nowhere.md) `tood/no_such_file.py`\n')
    with pytest.raises(AssertionError):
        test_code_fences_are_balanced(doc)
    with pytest.raises(AssertionError, match='3 cells, header 2'):
        test_table_rows_have_the_header_width(doc)
    doc.write_text('[gone](nowhere.md) and `tood/no_such_file.py`\n')
    with pytest.raises(AssertionError, match='nowhere.md does not exist'):
        test_relative_links_exist(doc)
    with pytest.raises(AssertionError, match='tood/no_such_file.py'):
        test_named_repository_paths_exist(doc)
