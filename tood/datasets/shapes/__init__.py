"""The built-in procedural detection set: textured shapes on clutter.

It lets TOOD be trained and evaluated end to end without downloading
anything. A config draws it with a ``data_preparer`` and reads it with
ordinary COCO datasets (``configs/_base_/datasets/shapes_detection.py``;
the tools draw the set before they read it, see
``tood.datasets.preparers``)::

    data_preparer = dict(type='ShapesPreparer', data_root='data/shapes/',
                         num_train=2000, num_val=200, img_size=256, seed=0)
    train_dataloader = dict(dataset=dict(
        type='CocoDataset', data_root='data/shapes/',
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/')))

What makes it a detection task rather than a toy:

* eight shape classes, each drawn with a random stretch (aspect ratio up
  to 1.6-2.5 by class), rotation, colour and texture (solid, stripes,
  checker, noise);
* object sizes from 8 px to 80% of the image (a third of the objects are
  COCO-small, half medium), 0 to 8 objects per image (about 5% of images
  are empty), overlapping and partly hidden by each other or by the image
  border;
* backgrounds made of colour gradients, soft noise, soft irregular blobs
  and thin lines, none of which resembles a class.

One concept per module:

* ``outlines``: the classes, their outlines and a random instance of one;
* ``background``: the clutter behind the objects;
* ``drawing``: :func:`render_image`, one image and its exact annotations;
* ``writing``: :func:`generate_shapes`, both splits as PNGs and COCO jsons,
  the same bytes for a given seed;
* ``preparer``: :class:`ShapesPreparer`, the config's entry point, which
  draws the set once, safely when several processes ask at once.
"""
from .drawing import MAX_OBJECTS, ShapesImage, render_image
from .outlines import SHAPES_CLASSES
from .preparer import ShapesPreparer
from .writing import (IMG_SIZE, NUM_TRAIN, NUM_VAL, annotation_file,
                      generate_shapes, image_rng)

__all__ = [
    'SHAPES_CLASSES', 'MAX_OBJECTS', 'ShapesImage', 'render_image',
    'IMG_SIZE', 'NUM_TRAIN', 'NUM_VAL', 'annotation_file', 'generate_shapes',
    'image_rng', 'ShapesPreparer'
]
