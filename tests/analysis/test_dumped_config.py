"""Configs dumped into work dirs are read without running them."""
import glob
import json
import os
import os.path as osp

import pytest
from mmengine.config import Config

from tood.analysis.dumped_config import parse_config_text, read_dumped_config
from tood.analysis.results import collect_run
from tood.errors import ConfigError

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIGS = sorted(
    path for path in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                               recursive=True) if '_base_' not in path)


@pytest.mark.parametrize('path', CONFIGS[::4] + [CONFIGS[-1]])
def test_a_dump_of_every_kind_of_shipped_config_reads_back(tmp_path, path):
    cfg = Config.fromfile(path)
    cfg.merge_from_dict({'model.test_cfg.score_thr': -0.5})
    dumped = str(tmp_path / osp.basename(path))
    cfg.dump(dumped)  # as the runner dumps it into the work dir
    assert read_dumped_config(dumped).to_dict() == cfg.to_dict()


def work_dir_with(tmp_path, config_text: str) -> str:
    work_dir = tmp_path / 'shared_run'
    run = work_dir / '20240101_000000' / 'vis_data'
    os.makedirs(run)
    (work_dir / 'config.py').write_text(config_text)
    (run / 'scalars.json').write_text(
        json.dumps({'coco/bbox_mAP': 0.5, 'step': 1}) + '\n')
    return str(work_dir)


def test_collect_run_does_not_run_the_work_dirs_python(tmp_path):
    marker = tmp_path / 'pwned'
    work_dir = work_dir_with(
        tmp_path, f"model = dict(type='TOOD')\nopen({str(marker)!r}, 'w')\n")
    with pytest.raises(ConfigError) as info:
        collect_run(work_dir, count_flops=True)
    assert not marker.exists()
    message = str(info.value)
    assert osp.join(work_dir, 'config.py') in message
    assert 'line 2' in message and 'nothing in it was run' in message


@pytest.mark.parametrize('text, problem', [
    ('import os\n', 'line 1: an import'),
    ("open('x', 'w')\n", 'line 1: a call of open'),
    ('for i in []:\n    pass\n', 'line 1: a statement (For)'),
    ('x = __import__("os").getcwd()\n', 'line 1: a call of __import__'),
    ('x = dict(a=1, **other)\n', 'line 1: dict(**...)'),
    ('a = 1\nb = a\n', "line 2: the name 'a'"),
    ('x = [i for i in range(3)]\n', 'line 1: a ListComp'),
    ('x, y = 1, 2\n', 'line 1: an assignment to several names'),
    ('x = (\n', 'not valid Python'),
])
def test_anything_but_plain_values_is_refused_by_line(text, problem):
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, 'work/config.py')
    assert f'work/config.py, {problem}' in str(info.value) or (
        problem in str(info.value))


def test_plain_values_are_read():
    text = ("a = dict(b=[1, -2.5, (3, None)], c={'k.x': True})\n"
            "d = 'x'\n")
    assert parse_config_text(text, 'c.py') == dict(
        a=dict(b=[1, -2.5, (3, None)], c={'k.x': True}), d='x')
