"""One shapes image and its exact annotations.

Every object is rasterised as a binary mask (no anti-aliasing), later
objects cover earlier ones, and the box is the tight box of the pixels
that stay visible, ``[x, y, w, h]`` with ``w = max col - min col + 1`` as
in COCO; ``area`` is the visible pixel count, as COCO's segment area. A
placement that would leave any object (itself, by the border, or an
earlier one, by occlusion) less than 40% visible is rejected, so every
drawn shape is annotated and recognisable. Every colour is checked
against the pixels around the object, so shapes stand out from what they
are drawn on. Objects are solid, striped, checked or noisy; half of the
images get sensor noise at the end.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import cv2
import numpy as np

from tood.datasets.shapes.background import draw_background
from tood.datasets.shapes.outlines import (SHAPES_CLASSES, Polygons,
                                           sample_outline)

MAX_OBJECTS = 8  # default most objects in one image
SMALL_SOLID = 24  # px, objects smaller than this are not striped/checked
MIN_VISIBLE = 0.4  # fraction of an object's pixels that must stay visible
EMPTY_PROB = 0.05
MIN_CONTRAST = 60.0  # RGB distance between an object and its surroundings
_SUBPIXEL_BITS = 4  # cv2.fillPoly precision: 1/16 px

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


def render_image(rng: np.random.Generator,
                 height: int,
                 width: int,
                 max_objects: int = MAX_OBJECTS,
                 debug: bool = False,
                 max_object_size: Optional[float] = None) -> ShapesImage:
    """Draw one image and its annotations.

    Args:
        rng: the image's own random stream.
        height, width: image size in px.
        max_objects: the number of objects is drawn from 1..max_objects
            (0 with probability EMPTY_PROB); placements that fail the
            visibility or contrast checks are retried a few times, then
            skipped.
        max_object_size: the longer side of the largest objects, px
            (default: 80% of the image's shorter side).
        debug: also return the owner map, background, clean image and
            textures (see ShapesImage).
    """
    canvas = draw_background(rng, height, width)
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
            polys, holes, size = sample_outline(rng, label, height, width,
                                                max_object_size)
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
