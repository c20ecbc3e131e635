import os.path as osp

import pytest

from tood.errors import OutputConflictError
from tood.output_paths import output_names, refuse_overwriting_inputs


def test_names_stay_short_where_they_are_distinct():
    assert output_names(['r/dog.png', 'r/cat.jpg', 'r/cat.png']) == [
        'dog', 'cat.jpg', 'cat.png']


def test_a_folder_written_with_underscores_never_takes_another_name():
    # r/a/x.png and r/b/x.png share a name, so they are named by their
    # folder: a__x.png, which r/a__x.png (its stem shared with
    # r/a__x.jpg) is named too.
    paths = ['r/a/x.png', 'r/b/x.png', 'r/a__x.png', 'r/a__x.jpg']
    names = output_names(paths)
    assert len(set(names)) == len(paths)
    assert names == ['a__x.png', 'b__x.png', 'a__x.png~2', 'a__x.jpg']


def test_a_numbered_name_skips_one_that_is_taken():
    paths = ['r/a/x.png', 'r/a__x.png', 'r/a__x.jpg', 'r/a__x.png~2.gif',
             'r/b/x.png']
    names = output_names(paths)
    assert len(set(names)) == len(paths)
    assert 'a__x.png~2' in names and 'a__x.png~3' in names


def test_an_output_that_is_an_input_is_named(tmp_path):
    image = tmp_path / 'a.png'
    image.write_bytes(b'')
    with pytest.raises(OutputConflictError, match='--out-dir'):
        refuse_overwriting_inputs([osp.join(str(tmp_path), 'a.png')],
                                  [str(image)], '--out-dir')
