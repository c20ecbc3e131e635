"""A procedural detection dataset: textured shapes on cluttered backgrounds.

It lets TOOD be trained and evaluated end to end without downloading COCO:
the default set (2000 train / 200 val images of 320x320, eight classes)
is generated in about 35 s of one core (316 MB) and written in COCO
format, so the ordinary COCO dataset, metric and tools apply unchanged::

    python -m tood.datasets.shapes data/shapes

or, from a config, with a ``data_preparer`` beside ordinary COCO datasets
(``configs/_base_/datasets/shapes_detection.py``; the tools draw the set
first when it is missing, see ``tood.datasets.preparers``)::

    data_preparer = dict(type='ShapesPreparer', data_root='data/shapes/')
    train_dataloader = dict(dataset=dict(
        type='CocoDataset', data_root='data/shapes/',
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/')))

``ShapesDataset`` below, which draws the set when it is built, is a
shortcut for scripts and tests; configs keep the drawing out of their
datasets, so that pointing a derived config at other data leaves no
generator arguments behind.

What makes it a detection task rather than a toy:

* eight shape classes, each drawn with a random stretch (aspect ratio up
  to 1.6-2.5 by class), rotation, colour and texture (solid, stripes,
  checker, noise); an ellipse stays an ``ellipse`` and a square a
  ``rectangle`` however it is stretched, so no two classes differ by a
  stretch alone;
* object sizes from 8 px to 80% of the image (a third of the objects are
  COCO-small, half medium), 0 to 8 objects per image
  (about 5% of images are empty), overlapping and partly hidden by each
  other or by the image border;
* backgrounds made of colour gradients, soft noise, soft irregular blobs
  and thin lines, none of which resembles a class.

Annotations are exact: every object is rasterised as a binary mask (no
anti-aliasing), later objects cover earlier ones, and the box is the tight
box of the pixels that stay visible, ``[x, y, w, h]`` with
``w = max col - min col + 1`` as in COCO; ``area`` is the visible pixel
count, as COCO's segment area. A placement that would leave any object
(itself, by the border, or an earlier one, by occlusion) less than 40%
visible is rejected, so every drawn shape is annotated and recognisable.
Every colour is checked against the pixels around the object, so shapes
stand out from what they are drawn on.

Each image has its own random stream, seeded from ``(seed, split, index)``,
and PNG is lossless, so a given seed always gives the same bytes, and the
val split does not change with ``num_train``.
"""
import argparse
import fcntl
import json
import logging
import multiprocessing
import os
import os.path as osp
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from mmengine.logging import print_log

from tood.datasets.coco import CocoDataset
from tood.registry import DATASETS
from tood.visualization.palette import make_palette

SHAPES_CLASSES = ('ellipse', 'rectangle', 'triangle', 'star', 'cross', 'ring',
                  'hexagon', 'arrow')

# Defaults of the main job's set; the CLI and ShapesDataset share them.
NUM_TRAIN = 2000
NUM_VAL = 200
IMG_SIZE = 320
MAX_OBJECTS = 8

MIN_SIZE = 8  # px, longer side of the smallest objects
MAX_SIZE = 0.8  # of the image side, longer side of the largest objects
SMALL_SOLID = 24  # px, objects smaller than this are not striped/checked
MIN_VISIBLE = 0.4  # fraction of an object's pixels that must stay visible
EMPTY_PROB = 0.05
MIN_CONTRAST = 60.0  # RGB distance between an object and its surroundings
_SPLIT_STREAMS = {'train': 0, 'val': 1}
_SUBPIXEL_BITS = 4  # cv2.fillPoly precision: 1/16 px


# ----------------------------------------------------------------------------
# Shape outlines, in unit coordinates (extent about [-1, 1] on both axes).
# Each returns (outer polygons, hole polygons).
Polygons = List[np.ndarray]


def _regular(num: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    angles = phase + np.arange(num) * (2 * np.pi / num)
    return radius * np.stack([np.cos(angles), np.sin(angles)], 1)


def _ellipse(rng: np.random.Generator) -> Tuple[Polygons, Polygons]:
    return [_regular(64)], []


def _rectangle(rng: np.random.Generator) -> Tuple[Polygons, Polygons]:
    return [np.array([[-1., -1.], [1., -1.], [1., 1.], [-1., 1.]])], []


def _triangle(rng: np.random.Generator) -> Tuple[Polygons, Polygons]:
    # Stretch + rotation of an equilateral triangle covers all triangles
    # whose sides are not too unequal.
    tri = _regular(3, phase=-np.pi / 2)
    tri[:, 1] += 0.25  # centre the box (y spans -1 .. 0.5)
    return [tri / np.array([np.sqrt(3) / 2, 0.75])], []


def _star(rng: np.random.Generator) -> Tuple[Polygons, Polygons]:
    outer = _regular(5, 1.0, -np.pi / 2)
    inner = _regular(5, rng.uniform(0.38, 0.5), -np.pi / 2 + np.pi / 5)
    return [np.stack([outer, inner], 1).reshape(10, 2)], []


def _cross(rng: np.random.Generator) -> Tuple[Polygons, Polygons]:
    a = rng.uniform(0.25, 0.4)  # half width of an arm
    return [
        np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1],
                  [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]])
    ], []


def _ring(rng: np.random.Generator) -> Tuple[Polygons, Polygons]:
    return [_regular(64)], [_regular(64, rng.uniform(0.45, 0.68))]


def _hexagon(rng: np.random.Generator) -> Tuple[Polygons, Polygons]:
    return [_regular(6)], []


def _arrow(rng: np.random.Generator) -> Tuple[Polygons, Polygons]:
    s = rng.uniform(0.2, 0.3)  # half width of the shaft
    h = rng.uniform(0.65, 0.95)  # half width of the head
    x = rng.uniform(-0.1, 0.25)  # where the head starts
    return [
        np.array([[-1, -s], [x, -s], [x, -h], [1, 0], [x, h], [x, s],
                  [-1, s]])
    ], []


# Outline and largest stretch of each class. Stretch stays modest where a
# strong one would blur the class (a flat hexagon looks like a rectangle
# with cut corners, a flat star like a blob with spikes).
_SHAPES = ((_ellipse, 2.5), (_rectangle, 2.5), (_triangle, 2.0), (_star, 1.6),
           (_cross, 1.8), (_ring, 2.0), (_hexagon, 1.6), (_arrow, 1.6))
assert len(_SHAPES) == len(SHAPES_CLASSES)

TEXTURES = ('solid', 'stripes', 'checker', 'noise')


@dataclass
class ShapesImage:
    """One rendered image and its objects.

    Attributes:
        image: (H, W, 3) uint8, as written to disk.
        labels: (N,) int64 class indices into ``SHAPES_CLASSES``.
        bboxes: (N, 4) int64 tight ``[x, y, w, h]`` of the visible pixels.
        areas: (N,) int64 visible pixel counts.
        full_areas: (N,) int64 pixel counts of the whole objects, as if
            nothing covered them and the image had no border.
        owner: (H, W) int16, index of the object that each pixel shows, -1
            for background; only with ``debug=True``.
        background: (H, W, 3) uint8, the image before any object was drawn;
            only with ``debug=True``.
        clean: (H, W, 3) uint8, the image before the final sensor noise;
            only with ``debug=True``.
        textures: texture name of each object; only with ``debug=True``.
    """
    image: np.ndarray
    labels: np.ndarray
    bboxes: np.ndarray
    areas: np.ndarray
    full_areas: np.ndarray
    owner: Optional[np.ndarray] = None
    background: Optional[np.ndarray] = None
    clean: Optional[np.ndarray] = None
    textures: List[str] = field(default_factory=list)


# ----------------------------------------------------------------------------
# Background


def _background(rng: np.random.Generator, height: int,
                width: int) -> np.ndarray:
    """(H, W, 3) uint8 clutter: gradient, soft noise, soft blobs, lines."""
    # The smooth layers are made at a quarter of the size and upsampled:
    # they hold no detail that would be lost, and it is 16x less work.
    h, w = height // 4 + 2, width // 4 + 2
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    theta = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(theta) * xs + np.sin(theta) * ys
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    start, end = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    img = start + ramp[..., None] * (end - start)

    grid = rng.integers(3, 9)
    noise = rng.uniform(-1, 1, (grid, grid, 3)).astype(np.float32)
    img += rng.uniform(10, 45) * cv2.resize(
        noise, (w, h), interpolation=cv2.INTER_CUBIC)

    # Irregular blobs, blurred until no edge is left that could pass for an
    # object's outline.
    num_blobs = rng.integers(0, 5)
    if num_blobs:
        paint = np.zeros((h, w, 3), np.float32)
        alpha = np.zeros((h, w), np.float32)
        side = min(h, w)
        for _ in range(num_blobs):
            num = rng.integers(5, 9)
            radius = side * rng.uniform(0.08, 0.25) * rng.uniform(
                0.5, 1.0, num)
            angles = np.sort(rng.uniform(0, 2 * np.pi, num))
            centre = rng.uniform(0, 1, 2) * (w, h)
            pts = centre + radius[:, None] * np.stack(
                [np.cos(angles), np.sin(angles)], 1)
            colour = rng.uniform(0, 255, 3)
            cv2.fillPoly(paint, [np.round(pts).astype(np.int32)],
                         colour.tolist())
            cv2.fillPoly(alpha, [np.round(pts).astype(np.int32)], 1.0)
        sigma = 0.06 * side
        paint = cv2.GaussianBlur(paint, (0, 0), sigma)
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)[..., None]
        strength = rng.uniform(0.4, 0.9)
        img = img * (1 - strength * alpha) + strength * paint
    img = cv2.resize(
        np.clip(img, 0, 255).astype(np.uint8)[1:-1, 1:-1], (width, height),
        interpolation=cv2.INTER_LINEAR)

    # Thin straight lines and curves: long and at most 2 px wide, far from
    # the filled shapes of the classes.
    for _ in range(rng.integers(0, 13)):
        colour = rng.uniform(0, 255, 3).tolist()
        thickness = int(rng.integers(1, 3))
        if rng.random() < 0.5:
            p, q = rng.uniform(0, 1, (2, 2)) * (width, height)
            cv2.line(img, p.astype(int).tolist(), q.astype(int).tolist(),
                     colour, thickness, cv2.LINE_AA)
        else:
            steps = rng.integers(4, 10)
            heading = rng.uniform(0, 2 * np.pi) + np.cumsum(
                rng.normal(0, 0.4, steps))
            step = 0.08 * min(height, width)
            pts = rng.uniform(0, 1, 2) * (width, height) + np.cumsum(
                step * np.stack([np.cos(heading), np.sin(heading)], 1), 0)
            cv2.polylines(img, [np.round(pts).astype(np.int32)], False,
                          colour, thickness, cv2.LINE_AA)
    return img


# ----------------------------------------------------------------------------
# Objects


def _object_size(rng: np.random.Generator, img_side: int) -> float:
    """Longer side of an object, in px.

    Log-uniform between MIN_SIZE and MAX_SIZE * side, tilted towards large
    sizes (u ** 0.5) so that tiny objects are present but not the bulk.
    """
    high = MAX_SIZE * img_side
    if high <= MIN_SIZE:
        return float(high)
    return float(MIN_SIZE * (high / MIN_SIZE)**(rng.random()**0.5))


def _rasterise(polys: Polygons, holes: Polygons,
               origin: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Binary (uint8) mask of polygons minus holes in a patch at origin."""
    mask = np.zeros(shape, np.uint8)
    scale = 1 << _SUBPIXEL_BITS

    def fixed(pts: np.ndarray) -> np.ndarray:
        return np.round((pts - origin) * scale).astype(np.int32)

    cv2.fillPoly(mask, [fixed(p) for p in polys], 1, cv2.LINE_8,
                 _SUBPIXEL_BITS)
    if holes:
        cv2.fillPoly(mask, [fixed(p) for p in holes], 0, cv2.LINE_8,
                     _SUBPIXEL_BITS)
    return mask


def _texture(rng: np.random.Generator, kind: str, colours: np.ndarray,
             origin: np.ndarray, shape: Tuple[int, int],
             size: float) -> np.ndarray:
    """(h, w, 3) float32 texture of a patch; stripes/checker use 2 colours."""
    h, w = shape
    if kind in ('solid', 'noise'):
        tex = np.broadcast_to(colours[0], (h, w, 3)).astype(np.float32)
        if kind == 'noise':
            tex = tex + rng.normal(0, rng.uniform(8, 20),
                                   (h, w, 3)).astype(np.float32)
        return tex
    ys = origin[1] + np.arange(h, dtype=np.float32)[:, None]
    xs = origin[0] + np.arange(w, dtype=np.float32)[None, :]
    phi = rng.uniform(0, np.pi)
    u = np.cos(phi) * xs + np.sin(phi) * ys
    cell = float(np.clip(size / rng.uniform(5, 12), 1.5, 12))
    if kind == 'stripes':
        band = np.floor(u / cell).astype(np.int64) % 2
    else:
        v = -np.sin(phi) * xs + np.cos(phi) * ys
        band = (np.floor(u / cell) + np.floor(v / cell)).astype(np.int64) % 2
    return colours[band].astype(np.float32)


def _pick_colours(rng: np.random.Generator, kind: str,
                  surround: np.ndarray) -> Optional[np.ndarray]:
    """Colours for an object that contrast with the pixels around it.

    Args:
        surround: (M, 3) pixels just outside the object's mask.
    Returns:
        (C, 3) float32 colours (C = 2 for stripes and checker), or None when
        no tried colour stood out.
    """
    surround = surround.astype(np.float32)
    for _ in range(8):
        base = rng.uniform(0, 255, 3).astype(np.float32)
        colours = [base]
        if kind in ('stripes', 'checker'):
            # The second colour: a lighter or darker shade, away from the
            # end of the range, so the object still reads as one piece.
            sign = -1.0 if base.mean() > 127 else 1.0
            colours.append(np.clip(base + sign * rng.uniform(50, 90), 0, 255))
        colours = np.stack(colours)
        if surround.size == 0:
            return colours
        dist = np.linalg.norm(surround[None] - colours[:, None], axis=-1)
        # A few matching pixels (a crossing line) do not hide the object.
        if (np.mean(dist >= MIN_CONTRAST, axis=1) >= 0.9).all():
            return colours
    return None


def _sample_outline(rng: np.random.Generator, label: int, height: int,
                    width: int) -> Tuple[Polygons, Polygons, float]:
    """A random instance of class ``label``: size, stretch, turn, position.

    Returns:
        Outer and hole polygons in image coordinates (px), and the object's
        longer side before rotation.
    """
    outline, max_aspect = _SHAPES[label]
    polys, holes = outline(rng)
    size = _object_size(rng, min(height, width))
    aspect = float(np.exp(rng.uniform(0, np.log(max_aspect))))
    # The shorter side stays at least MIN_SIZE so small shapes keep their
    # form.
    short = min(size, max(size / aspect, MIN_SIZE))
    half = np.array([size, short]) / 2
    if rng.random() < 0.5:
        half = half[::-1]
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)],
                    [np.sin(angle), np.cos(angle)]])
    polys = [(p * half) @ rot.T for p in polys]
    holes = [(p * half) @ rot.T for p in holes]
    lo = np.min([p.min(0) for p in polys], 0)
    hi = np.max([p.max(0) for p in polys], 0)
    extent = hi - lo
    # Up to a quarter of the extent may fall outside the image.
    centre = rng.uniform(-0.25 * extent - lo,
                         np.array([width, height]) + 0.25 * extent - hi)
    return [p + centre for p in polys], [p + centre for p in holes], size


def render_image(rng: np.random.Generator,
                 height: int,
                 width: int,
                 max_objects: int = MAX_OBJECTS,
                 debug: bool = False) -> ShapesImage:
    """Draw one image and its annotations.

    Args:
        rng: the image's own random stream.
        height, width: image size in px.
        max_objects: the number of objects is drawn from 1..max_objects
            (0 with probability EMPTY_PROB); placements that fail the
            visibility or contrast checks are retried a few times, then
            skipped.
        debug: also return the owner map, background, clean image and
            textures (see ShapesImage).
    """
    canvas = _background(rng, height, width)
    background = canvas.copy() if debug else None
    owner = np.full((height, width), -1, np.int16)

    num_objects = 0 if rng.random() < EMPTY_PROB else int(
        rng.integers(1, max_objects + 1))
    labels: List[int] = []
    textures: List[str] = []
    regions: List[Tuple[slice, slice]] = []  # in-image patch of each object
    full_area: List[int] = []  # object pixels, including any outside
    visible: List[int] = []  # pixels still shown
    for _ in range(num_objects):
        for _attempt in range(10):
            label = int(rng.integers(len(SHAPES_CLASSES)))
            polys, holes, size = _sample_outline(rng, label, height, width)
            lo = np.min([p.min(0) for p in polys], 0)
            hi = np.max([p.max(0) for p in polys], 0)
            origin = np.floor(lo) - 1
            patch_hw = (int(np.ceil(hi[1] - origin[1])) + 2,
                        int(np.ceil(hi[0] - origin[0])) + 2)
            mask = _rasterise(polys, holes, origin, patch_hw)
            area = int(mask.sum())
            if area == 0:
                continue

            x0, y0 = int(origin[0]), int(origin[1])
            ix0, iy0 = max(x0, 0), max(y0, 0)
            ix1 = min(x0 + patch_hw[1], width)
            iy1 = min(y0 + patch_hw[0], height)
            if ix1 <= ix0 or iy1 <= iy0:
                continue
            crop = mask[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0].astype(bool)
            shown = int(crop.sum())
            if shown < MIN_VISIBLE * area:
                continue
            region = (slice(iy0, iy1), slice(ix0, ix1))
            covered = owner[region][crop]
            lost = np.bincount(
                covered[covered >= 0], minlength=len(labels))
            if any(visible[j] - lost[j] < MIN_VISIBLE * full_area[j]
                   for j in np.flatnonzero(lost)):
                continue

            # Contrast against a 2 px band around the object, holes
            # included (they show whatever lies below).
            band = cv2.dilate(mask, np.ones((5, 5), np.uint8))
            band = band[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0].astype(bool)
            band &= ~crop
            # Stripes and checks would break a tiny shape into pieces.
            kinds = TEXTURES if size >= SMALL_SOLID else ('solid', 'noise')
            kind = kinds[rng.integers(len(kinds))]
            colours = _pick_colours(rng, kind, canvas[region][band])
            if colours is None:
                continue

            tex = _texture(rng, kind, colours, np.array([ix0, iy0]),
                           crop.shape, size)
            canvas[region][crop] = np.clip(tex[crop], 0, 255).astype(np.uint8)
            owner[region][crop] = len(labels)
            for j in np.flatnonzero(lost):
                visible[j] -= int(lost[j])
            labels.append(label)
            textures.append(kind)
            regions.append(region)
            full_area.append(area)
            visible.append(shown)
            break

    bboxes = np.zeros((len(labels), 4), np.int64)
    for k, (rows, cols) in enumerate(regions):
        mine = owner[rows, cols] == k
        ys = np.flatnonzero(mine.any(1))
        xs = np.flatnonzero(mine.any(0))
        bboxes[k] = (cols.start + xs[0], rows.start + ys[0],
                     xs[-1] - xs[0] + 1, ys[-1] - ys[0] + 1)

    clean = canvas.copy() if debug else None
    # Sensor noise on half of the images; it leaves the masks unchanged.
    if rng.random() < 0.5:
        noise = rng.standard_normal(canvas.shape, np.float32)
        noise *= rng.uniform(2, 8)
        canvas = np.clip(canvas + noise, 0, 255).astype(np.uint8)

    return ShapesImage(
        image=canvas,
        labels=np.array(labels, np.int64),
        bboxes=bboxes,
        areas=np.array(visible, np.int64),
        full_areas=np.array(full_area, np.int64),
        owner=owner if debug else None,
        background=background,
        clean=clean,
        textures=textures if debug else [])


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of image ``index`` of ``split``."""
    return np.random.default_rng([seed, _SPLIT_STREAMS[split], index])


# ----------------------------------------------------------------------------
# Writing the set


def _write_image(job: Tuple[str, str, int, int, int, int]) -> list:
    """Draw image ``index`` of ``split``, write its PNG and return its
    objects as (label, bbox, area) tuples; one task of the process pool."""
    root, split, index, img_size, seed, max_objects = job
    sample = render_image(
        image_rng(seed, split, index), img_size, img_size, max_objects)
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
                    processes: Optional[int] = None) -> None:
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
    """
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(SHAPES_CLASSES)
    ]
    info = dict(
        description='tood procedural shapes',
        num_train=num_train,
        num_val=num_val,
        img_size=img_size,
        seed=seed,
        max_objects=max_objects)
    processes = processes or os.cpu_count() or 1
    pool = multiprocessing.Pool(processes) if processes > 1 else None
    try:
        for split, num in (('train', num_train), ('val', num_val)):
            os.makedirs(osp.join(root, split), exist_ok=True)
            jobs = [(root, split, index, img_size, seed, max_objects)
                    for index in range(num)]
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
            with open(
                    osp.join(root, 'annotations',
                             f'instances_{split}.json'), 'w') as f:
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


def prepare_shapes(root: str, **kwargs) -> None:
    """Generate the set at ``root`` unless it is already there.

    Safe when several processes (e.g. distributed ranks) call it at once:
    one generates under a file lock while the others wait for it, and the
    set is built in a temporary folder next to ``root`` and renamed into
    place, so ``root`` is never seen half written.

    Args:
        kwargs: passed to ``generate_shapes``.
    """
    root = osp.abspath(root)
    done = [
        osp.join(root, 'annotations', f'instances_{split}.json')
        for split in _SPLIT_STREAMS
    ]
    if all(osp.exists(p) for p in done):
        return
    parent, name = osp.split(root)
    os.makedirs(parent, exist_ok=True)
    with open(osp.join(parent, f'.{name}.lock'), 'w') as lock:
        # Released by the OS if the holder dies, so no stale lock remains.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(osp.exists(p) for p in done):
            return
        if osp.isdir(root) and os.listdir(root):
            raise FileExistsError(
                f'{root} exists and is not a complete shapes dataset: '
                'remove it or point data_root elsewhere')
        print_log(
            f'generating the shapes dataset in {root}', logger='current')
        tmp = tempfile.mkdtemp(prefix=f'.{name}.tmp-', dir=parent)
        try:
            generate_shapes(tmp, **kwargs)
            os.replace(tmp, root)  # atomic; replaces an empty folder
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


class ShapesDataset(CocoDataset):
    """The procedural shapes set, generated on first use (a shortcut for
    scripts and tests; configs use ``CocoDataset`` with a ``ShapesPreparer``,
    see the module docstring).

    If ``ann_file`` does not exist, the whole set (both splits) is generated
    at ``data_root`` with the arguments below, then loaded as any COCO file.
    An existing set made with other arguments is loaded as it is, with a
    warning.

    Args:
        ann_file: relative to ``data_root``, e.g.
            ``'annotations/instances_val.json'``.
        data_root: where the set lives or is generated.
        num_train, num_val, img_size, seed: passed to ``generate_shapes``.
        **kwargs: as ``CocoDataset``; ``data_prefix`` defaults to the split
            folder named by ``ann_file`` (``instances_val.json`` ->
            ``dict(img='val/')``).
    """

    METAINFO = dict(
        classes=SHAPES_CLASSES, palette=make_palette(len(SHAPES_CLASSES)))

    def __init__(self,
                 ann_file: str = 'annotations/instances_train.json',
                 data_root: str = 'data/shapes',
                 num_train: int = NUM_TRAIN,
                 num_val: int = NUM_VAL,
                 img_size: int = IMG_SIZE,
                 seed: int = 0,
                 **kwargs) -> None:
        ann_path = ann_file if osp.isabs(ann_file) else osp.join(
            data_root, ann_file)
        wanted = dict(
            num_train=num_train, num_val=num_val, img_size=img_size,
            seed=seed)
        if not osp.exists(ann_path):
            prepare_shapes(data_root, **wanted)
        if not osp.exists(ann_path):
            raise FileNotFoundError(
                f'{ann_path} is not part of the generated set: use '
                'annotations/instances_train.json or instances_val.json')
        self.warn_if_different(ann_path, wanted)
        if 'data_prefix' not in kwargs:
            split = osp.splitext(osp.basename(ann_path))[0].split('_')[-1]
            kwargs['data_prefix'] = dict(img=f'{split}/')
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    @classmethod
    def config_paths(cls, dataset_cfg: dict) -> List[str]:
        """Nothing needs to exist beforehand: the set is drawn on first use
        (see ``tood.datasets.preparers.dataset_config_paths``)."""
        return []

    @staticmethod
    def warn_if_different(ann_path: str, wanted: Dict[str, int]) -> None:
        """Warn if the set of ``ann_path`` was drawn with arguments other
        than ``wanted`` (those the file's ``info`` records)."""
        with open(ann_path) as f:
            info = json.load(f).get('info', {})
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


# `python -m tood.datasets.shapes` runs this file a second time, as
# __main__, after `import tood.datasets` has registered the class.
if __name__ != '__main__':
    DATASETS.register_module(module=ShapesDataset)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description='Generate the procedural shapes detection dataset.')
    parser.add_argument('out_dir')
    parser.add_argument('--num-train', type=int, default=NUM_TRAIN)
    parser.add_argument('--num-val', type=int, default=NUM_VAL)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', type=int, default=IMG_SIZE)
    parser.add_argument('--max-objects', type=int, default=MAX_OBJECTS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    generate_shapes(args.out_dir, args.num_train, args.num_val, args.size,
                    args.seed, args.max_objects)
    print(f'wrote {args.num_train} train and {args.num_val} val images to '
          f'{args.out_dir} in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    main()
