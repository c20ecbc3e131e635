"""The shapes set's entry point: the ``ShapesPreparer`` of a config.

``data_preparer = dict(type='ShapesPreparer', data_root='data/shapes/',
...)`` draws the set (``generate_shapes``) the first time a tool is about
to read ``data_root`` and finds it missing; see
``tood.datasets.preparers`` for when preparers run.
"""
import fcntl
import json
import logging
import os
import os.path as osp
import shutil
import tempfile
from typing import List, Optional

from mmengine.logging import print_log

from tood.datasets.preparers import DATA_PREPARERS, BasePreparer
from tood.datasets.shapes.drawing import MAX_OBJECTS
from tood.datasets.shapes.writing import (IMG_SIZE, NUM_TRAIN, NUM_VAL,
                                          SPLITS, annotation_file,
                                          drawing_arguments, generate_shapes)


@DATA_PREPARERS.register_module()
class ShapesPreparer(BasePreparer):
    """Draws the procedural shapes set under ``data_root``.

    Layout (read with ``CocoDataset``)::

        annotations/instances_{train,val}.json
        train/000000.png ...    val/000000.png ...

    The set is drawn in a temporary folder next to ``data_root`` and
    renamed into place, so ``data_root`` is never seen half written; when
    several processes (distributed ranks) ask at once, one draws under a
    file lock while the others wait for it. A non-empty ``data_root`` that
    is not a complete set is refused rather than overwritten. An existing
    set drawn with other arguments is used as it is, with a warning naming
    the differences (delete the folder to draw it again).

    Args:
        data_root: where the set is drawn.
        num_train, num_val, img_size, seed, max_objects,
            max_object_size: as :func:`tood.datasets.shapes.generate_shapes`.
    """

    def __init__(self,
                 data_root: str = 'data/shapes/',
                 num_train: int = NUM_TRAIN,
                 num_val: int = NUM_VAL,
                 img_size: int = IMG_SIZE,
                 seed: int = 0,
                 max_objects: int = MAX_OBJECTS,
                 max_object_size: Optional[int] = None) -> None:
        super().__init__(data_root)
        self.arguments = drawing_arguments(num_train, num_val, img_size, seed,
                                           max_objects, max_object_size)

    def outputs(self) -> List[str]:
        return [annotation_file(self.data_root, split) for split in SPLITS]

    def make(self) -> None:
        root = osp.abspath(self.data_root)
        parent, name = osp.split(root)
        os.makedirs(parent, exist_ok=True)
        with open(osp.join(parent, f'.{name}.lock'), 'w') as lock:
            # Released by the OS if the holder dies, so no stale lock remains.
            fcntl.flock(lock, fcntl.LOCK_EX)
            if all(osp.exists(p) for p in self.outputs()):
                return  # drawn by another process while this one waited
            if osp.isdir(root) and os.listdir(root):
                raise FileExistsError(
                    f'{root} exists and is not a complete shapes dataset: '
                    'remove it or point data_root elsewhere')
            print_log(
                f'generating the shapes dataset in {root}', logger='current')
            tmp = tempfile.mkdtemp(prefix=f'.{name}.tmp-', dir=parent)
            try:
                generate_shapes(tmp, **self.arguments)
                os.replace(tmp, root)  # atomic; replaces an empty folder
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise

    def check(self) -> None:
        # The val split is the one the metric reads; its info records the
        # arguments it was drawn with.
        ann_path = annotation_file(self.data_root, 'val')
        with open(ann_path) as f:
            info = json.load(f).get('info', {})
        wanted = self.arguments
        different = {
            k: info.get(k)
            for k, v in wanted.items() if k in info and info.get(k) != v
        }
        if different:
            print_log(
                f'{ann_path} was generated with {different}, not with '
                f'the requested {wanted}; loading it as it is (delete the '
                'folder to regenerate)',
                logger='current',
                level=logging.WARNING)
