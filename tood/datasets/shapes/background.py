"""The cluttered backgrounds of the shapes images.

Colour gradients, soft noise, soft irregular blobs and thin lines, none of
which resembles a shape class.
"""
import cv2
import numpy as np


def draw_background(rng: np.random.Generator, height: int,
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
