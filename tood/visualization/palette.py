"""Class colours: the palette datasets put in their metainfo and drawing
falls back on.

At the bottom of the package (it imports nothing of tood's), so that the
datasets, the drawing code and the inference API all take it from here.
"""
import colorsys
from typing import List, Tuple


def make_palette(num_colors: int) -> List[Tuple[int, int, int]]:
    """``num_colors`` distinct, deterministic RGB colours.

    Hues step by the golden ratio so that neighbouring labels differ
    strongly; saturation and value cycle to separate hues that come close.
    """
    palette = []
    for i in range(num_colors):
        hue = (i * 0.618033988749895) % 1.0
        saturation = (0.95, 0.7, 0.5)[i % 3]
        value = (0.95, 0.75)[(i // 3) % 2]
        r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
        palette.append((round(r * 255), round(g * 255), round(b * 255)))
    return palette
