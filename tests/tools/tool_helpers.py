"""A tiny COCO-format dataset and helpers to run the tools as subprocesses."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Sequence

import cv2
import numpy as np

from tood.engine import load_from_local

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
R50_1X = osp.join(REPO, 'configs', 'tood', 'tood_r50_fpn_1x_coco.py')


def make_coco(root: str, categories: Sequence[dict], num_images: int,
              split: str, seed: int = 0) -> str:
    """Write ``num_images`` 96x128 images with one or two filled shapes each
    and their COCO json; returns the json's path.

    Category ``k`` of ``categories`` is drawn as a rectangle of colour k, so
    there is something to learn, but nothing here depends on learning it.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    colors = [(40, 40, 220), (40, 200, 40), (220, 60, 40), (200, 200, 40)]
    images, annotations = [], []
    for i in range(num_images):
        height, width = 96, 128
        img = np.full((height, width, 3), 127, np.uint8)
        file_name = f'{split}_{i:03d}.jpg'
        image_id = 100 + i
        for k in range(1 + i % 2):
            cat = k if len(categories) > 1 else 0
            w, h = rng.integers(24, 56, size=2)
            x, y = rng.integers(0, width - w), rng.integers(0, height - h)
            cv2.rectangle(img, (int(x), int(y)), (int(x + w - 1),
                                                  int(y + h - 1)),
                          colors[cat % len(colors)], -1)
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=categories[cat]['id'],
                    bbox=[int(x), int(y), int(w), int(h)],
                    area=int(w * h),
                    iscrowd=0))
        cv2.imwrite(osp.join(root, 'images', file_name), img)
        images.append(
            dict(id=image_id, file_name=file_name, height=height,
                 width=width))
    ann_file = osp.join(root, 'annotations', f'{split}.json')
    with open(ann_file, 'w') as f:
        json.dump(
            dict(
                images=images,
                annotations=annotations,
                categories=list(categories)), f)
    return ann_file


def tiny_model_options(num_classes: int) -> List[str]:
    """``--cfg-options`` that shrink TOOD to a ResNet-18 with 16 channels."""
    return [
        'model.backbone.depth=18',
        'model.backbone.init_cfg=None',
        'model.neck.in_channels=[64,128,256,512]',
        'model.neck.out_channels=16',
        'model.bbox_head.in_channels=16',
        'model.bbox_head.feat_channels=16',
        'model.bbox_head.stacked_convs=2',
        'model.bbox_head.norm_cfg.num_groups=4',
        f'model.bbox_head.num_classes={num_classes}',
    ]


def data_options(root: str) -> List[str]:
    """``--cfg-options`` that point the COCO config at ``make_coco``'s files
    and keep the images small."""
    options = []
    for stage, split, resize in (('train', 'train', 2), ('val', 'val', 1),
                                 ('test', 'val', 1)):
        loader = f'{stage}_dataloader'
        options += [
            f'{loader}.dataset.data_root={root}/',
            f'{loader}.dataset.ann_file=annotations/{split}.json',
            f'{loader}.dataset.data_prefix.img=images/',
            f'{loader}.dataset.pipeline.{resize}.scale=(128,96)',
            f'{loader}.num_workers=0',
            f'{loader}.persistent_workers=False',
            f'{stage}_evaluator.ann_file={root}/annotations/{split}.json'
            if stage != 'train' else f'{loader}.batch_size=2',
        ]
    return options


def run_tool(args: Sequence[str], cwd: str, timeout: int = 300,
             env: Dict[str, str] = None) -> subprocess.CompletedProcess:
    """Run ``args`` with this interpreter's environment plus the repo on
    PYTHONPATH; returns the finished process (stdout and stderr merged)."""
    full_env = dict(os.environ)
    full_env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO, full_env.get('PYTHONPATH')) if p)
    # Two threads per process are all this machine has.
    full_env.setdefault('OMP_NUM_THREADS', '1')
    full_env.update(env or {})
    return subprocess.run(
        args,
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)


def load_analysis_tool(name: str):
    """``tools/analysis/<name>.py`` as a module, to call its functions."""
    spec = importlib.util.spec_from_file_location(
        f'tood_analysis_{name}',
        osp.join(REPO, 'tools', 'analysis', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def python_tool(name: str, *args: str, **kwargs):
    return run_tool([sys.executable, osp.join(REPO, 'tools', name), *args],
                    **kwargs)


def assert_ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc.stdout


def load_checkpoint(path: str) -> dict:
    """A checkpoint the tools wrote, through the same allow-list."""
    return load_from_local(path)
