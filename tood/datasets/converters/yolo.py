"""YOLO text labels to a COCO detection json.

YOLO keeps one ``<stem>.txt`` per image, in a ``labels/`` folder parallel
to ``images/``, with a line ``class cx cy w h`` per object: the class an
index into the names, the box centre and size as fractions of the image's
width and height. The names come from a names file (one per line, as
darknet's ``obj.names`` or ``classes.txt``) or from a dataset yaml
(``names: [a, b]`` or ``names: {0: a, 1: b}``, as Ultralytics writes it).
An image without a label file has no objects.

Image sizes are read from the image headers, with the EXIF rotation
applied as ``LoadImageFromFile`` and Ultralytics apply it. The COCO boxes
are ``[(cx - w / 2) * W, (cy - h / 2) * H, w * W, h * H]`` in pixels
(clipped to the image), to ``decimals`` places.
"""
import logging
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import yaml
from mmengine.logging import print_log
from PIL import UnidentifiedImageError

from tood.datasets.findings import Findings
from tood.datasets.voc import image_size
from tood.errors import AnnotationError

# Ultralytics' image formats.
IMG_EXTENSIONS = ('.bmp', '.dng', '.jpeg', '.jpg', '.mpo', '.png', '.tif',
                  '.tiff', '.webp', '.pfm', '.heic')
# Normalised coordinates may overshoot [0, 1] by rounding in the exporter.
_TOLERANCE = 1e-3


def read_yolo_names(path: str) -> List[str]:
    """Class names, in index order, from a names file or a dataset yaml.

    Raises:
        AnnotationError: the file is missing, the yaml has no usable
            ``names``, or a name is empty or repeated.
    """
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except OSError as error:
        raise AnnotationError(f'names file {path} cannot be read: '
                              f'{error.strerror or error}') from None
    if path.endswith(('.yaml', '.yml')):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise AnnotationError(
                f'dataset yaml {path} is not valid YAML: {error}') from None
        names = data.get('names') if isinstance(data, dict) else None
        if isinstance(names, dict):
            # Numbers first, then the rest as text: keys of mixed types
            # ('1' beside 0) are named rather than failing to sort.
            keys = sorted(names, key=lambda k: (0, k) if isinstance(
                k, int) else (1, str(k)))
            if keys != list(range(len(keys))) or not all(
                    type(k) is int for k in keys):
                raise AnnotationError(
                    f'dataset yaml {path}: the keys of names must be the '
                    f'indices 0..{len(keys) - 1}, got {keys}')
            names = [names[k] for k in keys]
        if not isinstance(names, list):
            raise AnnotationError(
                f'dataset yaml {path} has no names list (names: [a, b] or '
                'names: {0: a, 1: b})')
        names = [str(n).strip() for n in names]
    else:
        names = [line.strip() for line in text.splitlines()]
        while names and not names[-1]:
            names.pop()
    empty = [i for i, n in enumerate(names) if not n]
    if empty or not names:
        raise AnnotationError(f'names file {path}: class name(s) at index '
                              f'{empty} are empty' if names else
                              f'names file {path} holds no class name')
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise AnnotationError(
            f'names file {path}: the names {repeated} appear more than once')
    return names


def default_labels_dir(images_dir: str) -> str:
    """YOLO's rule: the last ``images`` folder of the path becomes
    ``labels`` (``data/x/images/train`` -> ``data/x/labels/train``)."""
    parts = osp.normpath(images_dir).split(osp.sep)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == 'images':
            parts[i] = 'labels'
            return osp.sep.join(parts) or osp.sep
    raise AnnotationError(
        f'cannot tell the labels folder of {images_dir} (no "images" in the '
        'path): give it explicitly')


def list_images(images_dir: str) -> List[str]:
    """Image files under ``images_dir`` (recursively), sorted."""
    if not osp.isdir(images_dir):
        raise AnnotationError(f'image folder {images_dir} does not exist')
    found = []
    for folder, _, files in os.walk(images_dir):
        found += [
            osp.join(folder, f) for f in files
            if f.lower().endswith(IMG_EXTENSIONS)
        ]
    return sorted(found)


def parse_yolo_line(line: str,
                    num_classes: int) -> Tuple[Optional[tuple], str]:
    """``((label, cx, cy, w, h), '')`` or ``(None, why it is unusable)``."""
    fields = line.split()
    if len(fields) != 5:
        return None, (f'has {len(fields)} fields, not 5 (class cx cy w h; '
                      'segment or keypoint labels are not boxes)')
    try:
        label = int(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        return None, 'is not an integer class and four numbers'
    if not 0 <= label < num_classes:
        return None, (f'class {label} is not among the {num_classes} '
                      'names')
    if not all(math.isfinite(v) for v in values):
        return None, 'has a NaN or infinite coordinate'
    cx, cy, w, h = values
    lo, hi = -_TOLERANCE, 1 + _TOLERANCE
    if not (lo <= cx - w / 2 and cx + w / 2 <= hi and lo <= cy - h / 2
            and cy + h / 2 <= hi):
        return None, ('box reaches outside [0, 1]: coordinates must be '
                      'fractions of the image size')
    return (label, cx, cy, w, h), ''


def yolo_to_coco(images_dir: str,
                 names: Sequence[str],
                 labels_dir: Optional[str] = None,
                 img_root: Optional[str] = None,
                 decimals: int = 3) -> Dict[str, list]:
    """A COCO detection dict of a YOLO-labelled image folder.

    Every label file is checked in one pass; problems are raised together
    as one :class:`AnnotationError` naming each ``file:line``: lines that
    are not ``class cx cy w h``, classes beyond the names, boxes outside the
    image, images that cannot be read, label files that are not UTF-8 text
    (or are folders). Boxes of zero width or height, also after clipping
    to the image and rounding, are dropped and label files without an
    image are passed over, each with a warning naming them; so is a label
    file that several images share (``a.jpg`` and ``a.png`` both read
    ``a.txt``).

    Args:
        images_dir: the images (searched recursively).
        names: the class names, in index order; category ``i + 1`` is
            ``names[i]``.
        labels_dir: default: ``images_dir`` with its last ``images`` folder
            named ``labels``.
        img_root: ``file_name`` of each image is relative to it (the
            config's ``data_root`` + ``data_prefix['img']``); default
            ``images_dir``.
        decimals: pixel coordinates are rounded to this many places.
    Returns:
        ``dict(images, annotations, categories)``.
    """
    labels_dir = labels_dir or default_labels_dir(images_dir)
    img_root = images_dir if img_root is None else img_root
    image_files = list_images(images_dir)
    fatal, dropped = Findings(), Findings()
    images, annotations = [], []
    used_labels: Dict[str, List[str]] = {}
    for image_id, img_path in enumerate(image_files, start=1):
        rel = osp.relpath(img_path, images_dir)
        label_file = osp.join(labels_dir, osp.splitext(rel)[0] + '.txt')
        try:
            width, height = image_size(img_path)
        except (OSError, UnidentifiedImageError) as error:
            fatal.add(f'not an image that can be read ({error})', 'image',
                      rel)
            continue
        images.append(
            dict(
                id=image_id,
                file_name=osp.relpath(img_path, img_root),
                width=width,
                height=height))
        if not osp.exists(label_file):
            continue
        label_name = osp.relpath(label_file, labels_dir)
        used_labels.setdefault(osp.abspath(label_file), []).append(rel)
        if osp.isdir(label_file):
            fatal.add('a folder, not a label file', 'label file', label_name)
            continue
        try:
            with open(label_file, encoding='utf-8') as f:
                lines = f.read().splitlines()
        except UnicodeDecodeError as error:
            fatal.add(f'not UTF-8 text ({error.reason} at byte '
                      f'{error.start})', 'label file', label_name)
            continue
        except OSError as error:
            fatal.add(f'cannot be read ({error.strerror or error})',
                      'label file', label_name)
            continue
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            parsed, problem = parse_yolo_line(line, len(names))
            if parsed is None:
                fatal.add(problem, 'line', f'{label_name}:{number}')
                continue
            label, cx, cy, w, h = parsed
            if w <= 0 or h <= 0:
                dropped.add('dropped: zero or negative width or height',
                            'line', f'{label_name}:{number}')
                continue
            # Corners, clipped to the image (the tolerance above lets
            # exporters' rounding overshoot its border slightly).
            x1 = min(max((cx - w / 2) * width, 0.0), width)
            x2 = min(max((cx + w / 2) * width, 0.0), width)
            y1 = min(max((cy - h / 2) * height, 0.0), height)
            y2 = min(max((cy + h / 2) * height, 0.0), height)
            box = [round(v, decimals) for v in (x1, y1, x2 - x1, y2 - y1)]
            if box[2] <= 0 or box[3] <= 0:
                dropped.add('dropped: no width or height left inside the '
                            'image', 'line', f'{label_name}:{number}')
                continue
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=label + 1,
                    bbox=box,
                    area=round(box[2] * box[3], decimals),
                    iscrowd=0))
    if osp.isdir(labels_dir):
        for folder, _, files in os.walk(labels_dir):
            for f in sorted(files):
                path = osp.abspath(osp.join(folder, f))
                if (f.endswith('.txt') and path not in used_labels
                        and f != 'classes.txt'):
                    dropped.add('passed over: no image of that name',
                                'label file',
                                osp.relpath(path, osp.abspath(labels_dir)))
    shared = Findings()
    for path, users in used_labels.items():
        if len(users) > 1:
            shared.add(f'read for each of {", ".join(users)}', 'label file',
                       osp.relpath(path, osp.abspath(labels_dir)))
    if fatal:
        raise AnnotationError(
            f'YOLO labels in {labels_dir} (images in {images_dir}) cannot be '
            f'converted; {len(fatal)} problem(s) found:\n{fatal.bullets()}')
    if dropped:
        print_log(
            f'{labels_dir}: {len(dropped)} label(s) not converted:\n'
            f'{dropped.bullets()}',
            logger='current',
            level=logging.WARNING)
    if shared:
        print_log(
            f'{labels_dir}: {len(shared)} label file(s) serve several images '
            'of one name with different extensions, which all get its '
            'boxes; rename the images if that is not meant:\n'
            f'{shared.bullets()}',
            logger='current',
            level=logging.WARNING)
    categories = [
        dict(id=i + 1, name=name, supercategory='none')
        for i, name in enumerate(names)
    ]
    return dict(images=images, annotations=annotations, categories=categories)
