"""The eight shape classes: their outlines and how an instance is drawn.

Each class is an outline in unit coordinates (extent about [-1, 1] on both
axes), as outer polygons and hole polygons, and a largest stretch;
:func:`sample_outline` makes one instance of it in image pixels with a
random size, stretch, rotation and position. An ellipse stays an
``ellipse`` and a square a ``rectangle`` however it is stretched, so no
two classes differ by a stretch alone.
"""
from typing import List, Optional, Tuple

import numpy as np

SHAPES_CLASSES = ('ellipse', 'rectangle', 'triangle', 'star', 'cross', 'ring',
                  'hexagon', 'arrow')

MIN_SIZE = 8  # px, longer side of the smallest objects
MAX_SIZE = 0.8  # of the image side, longer side of the largest objects

# Polygons: (P, 2) arrays of (x, y) vertices. Each outline below returns
# (outer polygons, hole polygons).
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


def _object_size(rng: np.random.Generator, img_side: int,
                 max_size: Optional[float] = None) -> float:
    """Longer side of an object, in px.

    Log-uniform between MIN_SIZE and ``max_size`` (default MAX_SIZE *
    side), tilted towards large sizes (u ** 0.5) so that tiny objects are
    present but not the bulk.
    """
    high = MAX_SIZE * img_side if max_size is None else max_size
    if high <= MIN_SIZE:
        return float(high)
    return float(MIN_SIZE * (high / MIN_SIZE)**(rng.random()**0.5))


def sample_outline(
        rng: np.random.Generator, label: int, height: int, width: int,
        max_size: Optional[float] = None) -> Tuple[Polygons, Polygons, float]:
    """A random instance of class ``label``: size (longer side at most
    ``max_size`` px, default MAX_SIZE of the image), stretch, turn,
    position.

    Returns:
        Outer and hole polygons in image coordinates (px), and the object's
        longer side before rotation.
    """
    outline, max_aspect = _SHAPES[label]
    polys, holes = outline(rng)
    size = _object_size(rng, min(height, width), max_size)
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
