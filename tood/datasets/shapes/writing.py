"""The shapes set on disk: both splits as PNG images and COCO jsons.

Each image has its own random stream, seeded from ``(seed, split, index)``,
and PNG is lossless, so a given seed always gives the same bytes, whatever
the number of worker processes, and the val split does not change with
``num_train``.
"""
import json
import multiprocessing
import os
import os.path as osp
from typing import Optional

import cv2
import numpy as np

from tood.datasets.shapes.drawing import MAX_OBJECTS, render_image
from tood.datasets.shapes.outlines import SHAPES_CLASSES

# Defaults of generate_shapes and ShapesPreparer.
NUM_TRAIN = 2000
NUM_VAL = 200
IMG_SIZE = 320
_SPLIT_STREAMS = {'train': 0, 'val': 1}
SPLITS = tuple(_SPLIT_STREAMS)


def drawing_arguments(num_train: int, num_val: int, img_size: int,
                      seed: int, max_objects: int,
                      max_object_size: Optional[int]) -> dict:
    """The arguments that decide the set, as its jsons' ``info`` records
    them (``max_object_size`` only when it is set)."""
    arguments = dict(num_train=num_train, num_val=num_val,
                     img_size=img_size, seed=seed, max_objects=max_objects)
    if max_object_size is not None:
        arguments['max_object_size'] = max_object_size
    return arguments


def annotation_file(root: str, split: str) -> str:
    """The COCO json of ``split`` in the set at ``root``."""
    return osp.join(root, 'annotations', f'instances_{split}.json')


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of image ``index`` of ``split``."""
    return np.random.default_rng([seed, _SPLIT_STREAMS[split], index])


def _write_image(job: tuple) -> list:
    """Draw image ``index`` of ``split``, write its PNG and return its
    objects as (label, bbox, area) tuples; one task of the process pool."""
    root, split, index, img_size, seed, max_objects, max_object_size = job
    sample = render_image(
        image_rng(seed, split, index), img_size, img_size, max_objects,
        max_object_size=max_object_size)
    # Compression level 1: lossless like any level, and fastest.
    cv2.imwrite(
        osp.join(root, split, f'{index:06d}.png'), sample.image,
        [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return [(int(label), [int(v) for v in bbox], int(area))
            for label, bbox, area in zip(sample.labels, sample.bboxes,
                                         sample.areas)]


def generate_shapes(root: str,
                    num_train: int = NUM_TRAIN,
                    num_val: int = NUM_VAL,
                    img_size: int = IMG_SIZE,
                    seed: int = 0,
                    max_objects: int = MAX_OBJECTS,
                    processes: Optional[int] = None,
                    max_object_size: Optional[int] = None) -> None:
    """Write the dataset under ``root``, drawing the images in
    ``processes`` worker processes (default: one per CPU core; 1 draws in
    this process). Every image has its own random stream, so the files do
    not depend on the number of processes.

    Layout::

        root/train/000000.png ...
        root/val/000000.png ...
        root/annotations/instances_train.json
        root/annotations/instances_val.json

    The jsons are COCO detection files (ids start at 1, as COCOeval
    expects); their ``info`` records the generation arguments.
    ``max_object_size`` caps the objects' longer side (px; default 80% of
    ``img_size``): large canvases of small objects.
    """
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(SHAPES_CLASSES)
    ]
    info = dict(description='tood procedural shapes',
                **drawing_arguments(num_train, num_val, img_size, seed,
                                    max_objects, max_object_size))
    processes = processes or os.cpu_count() or 1
    pool = multiprocessing.Pool(processes) if processes > 1 else None
    try:
        for split, num in (('train', num_train), ('val', num_val)):
            os.makedirs(osp.join(root, split), exist_ok=True)
            jobs = [(root, split, index, img_size, seed, max_objects,
                     max_object_size) for index in range(num)]
            objects = (pool.imap(_write_image, jobs, chunksize=16)
                       if pool else map(_write_image, jobs))
            images, annotations = [], []
            for index, image_objects in enumerate(objects):
                images.append(
                    dict(
                        id=index + 1,
                        file_name=f'{index:06d}.png',
                        width=img_size,
                        height=img_size))
                for label, bbox, area in image_objects:
                    annotations.append(
                        dict(
                            id=len(annotations) + 1,
                            image_id=index + 1,
                            category_id=label + 1,
                            bbox=bbox,
                            area=area,
                            iscrowd=0))
            with open(annotation_file(root, split), 'w') as f:
                json.dump(
                    dict(
                        info=info,
                        images=images,
                        annotations=annotations,
                        categories=categories), f)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
