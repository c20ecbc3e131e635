"""Shared by the tests that train: a tiny shapes set and subprocess runs of
tools/train.py through train_driver.py."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.abspath(osp.join(HERE, '..', '..'))
CONFIG = osp.join(HERE, 'tiny_shapes_config.py')
DRIVER = osp.join(HERE, 'train_driver.py')


def make_shapes(root: str) -> str:
    """8 train and 5 val images of 64x64 in ``root``; returns ``root``."""
    from tood.datasets.shapes import generate_shapes
    generate_shapes(root, num_train=8, num_val=5, img_size=64, max_objects=4)
    return root


def tool_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO, env.get('PYTHONPATH')) if p)
    env['OMP_NUM_THREADS'] = '1'
    env.update(extra or {})
    return env


def start(args: Sequence[str], cwd: str,
          env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """Start ``args`` (stdout and stderr merged into ``.stdout``)."""
    return subprocess.Popen(
        list(args),
        cwd=cwd,
        env=tool_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)


def finish(proc: subprocess.Popen, timeout: int = 300) -> tuple:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def train_args(work_dir: str, *options: str, launcher: bool = False,
               nproc: int = 1, port: int = 0) -> List[str]:
    """Command line of the driver (tools/train.py) on the tiny config."""
    if nproc > 1:
        head = [
            sys.executable, '-m', 'torch.distributed.run',
            f'--nproc_per_node={nproc}', f'--master_port={port}', DRIVER
        ]
    else:
        head = [sys.executable, DRIVER]
    args = head + [CONFIG, '--work-dir', work_dir]
    if nproc > 1:
        args += ['--launcher', 'pytorch']
    if options:
        args += ['--cfg-options', *options]
    return args


def logged(work_dir: str) -> List[dict]:
    """Every line of the run's scalars.json (runs in ``work_dir`` in
    order of their timestamp folders)."""
    records = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


def train_losses(work_dir: str) -> Dict[int, dict]:
    """iteration -> the loss terms logged for it."""
    return {
        r['iter']: {k: v
                    for k, v in r.items() if k.startswith('loss')}
        for r in logged(work_dir) if 'loss' in r
    }


def val_metrics(work_dir: str) -> List[dict]:
    return [{k: v
             for k, v in r.items() if k.startswith('coco/')}
            for r in logged(work_dir) if 'coco/bbox_mAP' in r]
