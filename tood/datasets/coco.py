"""COCO-format detection dataset."""
import contextlib
import io
import json
import logging
import math
from numbers import Real
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mmengine import fileio
from mmengine.fileio import join_path
from mmengine.logging import print_log
from pycocotools.coco import COCO

from tood.datasets.base_det_dataset import BaseDetDataset
from tood.datasets.findings import Findings
from tood.errors import AnnotationError
from tood.registry import DATASETS
from tood.visualization.palette import make_palette

COCO_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train',
    'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
    'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag',
    'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon',
    'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot',
    'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
    'hair drier', 'toothbrush')


def load_coco(ann_file: str) -> COCO:
    """pycocotools' COCO api, without its progress prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(ann_file)


def match_classes(coco: COCO,
                  classes: Sequence[str],
                  ann_file: str = '',
                  log: bool = True) -> Tuple[Tuple[str, ...], List[int]]:
    """Match class names to the annotation file's category ids.

    Args:
        coco: the loaded annotation file.
        classes: names in label order (label i is ``classes[i]``).
        ann_file: the file's name, for messages.
        log: whether to log the INFO / WARNING lines below.
    Returns:
        The classes actually used and their category ids, both in label
        order. When ``classes`` are COCO's 80 names (the default) and the
        file lacks any of them, the file is a custom dataset: its own
        categories, sorted by id, become the classes.
    Raises:
        ValueError: a name that is no category of the file.
    """
    categories = coco.dataset.get('categories', [])
    name2id = {cat['name']: cat['id'] for cat in categories}
    classes = tuple(classes)
    if classes == COCO_CLASSES and not all(n in name2id for n in classes):
        categories = sorted(categories, key=lambda cat: cat['id'])
        classes = tuple(cat['name'] for cat in categories)
        if log:
            print_log(
                f'{ann_file} does not hold the 80 COCO categories and no '
                f'classes were given: using its {len(classes)} categories '
                f'sorted by id: {classes}',
                logger='current',
                level=logging.INFO)
        return classes, [cat['id'] for cat in categories]

    missing = [name for name in classes if name not in name2id]
    if missing:
        raise ValueError(f'classes {missing} match no category of '
                         f'{ann_file}; its categories are {list(name2id)}')
    cat_ids = [name2id[name] for name in classes]
    file_order = {cat['id']: i for i, cat in enumerate(categories)}
    positions = [file_order[cat_id] for cat_id in cat_ids]
    if log and positions != sorted(positions):
        print_log(
            f'classes {classes} are not in the category order of '
            f'{ann_file}; labels follow the order of the classes',
            logger='current',
            level=logging.WARNING)
    return classes, cat_ids


COCO_KEYS = ('images', 'annotations', 'categories')


def read_coco_json(ann_file: str,
                   backend_args: Optional[dict] = None) -> dict:
    """The parsed annotation file, or :class:`AnnotationError` saying why
    there is none (missing, not JSON, not a COCO detection file)."""
    if not ann_file:
        raise AnnotationError('the dataset has no ann_file: set it in the '
                              'config to a COCO-format json file')
    try:
        text = fileio.get(ann_file, backend_args=backend_args)
    except FileNotFoundError:
        raise AnnotationError(
            f'annotation file {ann_file} does not exist') from None
    except OSError as error:
        raise AnnotationError(f'annotation file {ann_file} cannot be read: '
                              f'{error.strerror or error}') from None
    try:
        data = json.loads(text)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise AnnotationError(
            f'annotation file {ann_file} is not valid JSON: {error}') from None
    if not isinstance(data, dict):
        raise AnnotationError(
            f'annotation file {ann_file} is not a COCO detection file: its '
            f'top level is a {type(data).__name__}, not an object with the '
            f'lists {", ".join(COCO_KEYS)}')
    lacking = [key for key in COCO_KEYS if not isinstance(data.get(key), list)]
    if lacking:
        raise AnnotationError(
            f'annotation file {ann_file} is not a COCO detection file: it has '
            f'no list {", ".join(repr(k) for k in lacking)} (its top-level '
            f'keys are {sorted(data)})')
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def check_coco(data: dict, ann_file: str) -> Findings:
    """One pass over a parsed COCO file (see :func:`read_coco_json`).

    Raises :class:`AnnotationError` listing every problem that makes the
    file unusable or ambiguous: entries that are not objects or lack their
    ids, sizes or file names; duplicate image, annotation or category ids
    or category names; boxes that are not ``[x, y, w, h]`` numbers or have
    NaN or infinite coordinates; category ids that are not among the
    categories.

    Returns:
        What is not fatal: annotations of images that are not in the file
        (they are ignored).
    """
    fatal, ignored = Findings(), Findings()

    def check_ids(section: str, noun: str, required: Dict[str, Any]) -> set:
        seen, duplicates = set(), set()
        for pos, entry in enumerate(data[section]):
            if not isinstance(entry, dict):
                fatal.add(f'the entry of {section!r} is not an object',
                          'position', pos)
                continue
            entry_id = entry.get('id')
            if not _is_id(entry_id):
                fatal.add(f'the entry of {section!r} has no integer or '
                          'string id', 'position', pos)
                continue
            if entry_id in seen:
                duplicates.add(entry_id)
            seen.add(entry_id)
            for key, valid in required.items():
                if not valid(entry.get(key)):
                    fatal.add(f'{key} is missing or invalid', noun,
                              entry_id)
        for entry_id in sorted(duplicates, key=str):
            fatal.add('the id is used more than once', noun, entry_id)
        return seen

    cat_ids = check_ids('categories', 'category',
                        dict(name=lambda v: isinstance(v, str)))
    names = [c.get('name') for c in data['categories'] if isinstance(c, dict)]
    for name in sorted({n for n in names if names.count(n) > 1}, key=str):
        fatal.add('the name is used by more than one category',
                  'category name', repr(name))
    img_ids = check_ids(
        'images', 'image',
        dict(
            file_name=lambda v: isinstance(v, str) and v != '',
            width=lambda v: _is_number(v) and v > 0,
            height=lambda v: _is_number(v) and v > 0))
    check_ids('annotations', 'annotation',
              dict(image_id=_is_id, category_id=_is_id))

    for ann in data['annotations']:
        if not isinstance(ann, dict) or not _is_id(ann.get('id')):
            continue  # already reported
        ann_id, box = ann['id'], ann.get('bbox')
        if not (isinstance(box, list) and len(box) == 4
                and all(_is_number(v) for v in box)):
            fatal.add('bbox is missing or not [x, y, width, height] numbers',
                      'annotation', ann_id)
        elif not all(math.isfinite(v) for v in box):
            fatal.add('bbox has a NaN or infinite coordinate', 'annotation',
                      ann_id)
        cat_id = ann.get('category_id')
        if _is_id(cat_id) and cat_id not in cat_ids:
            fatal.add(
                f'category_id {cat_id!r} is not among the categories '
                f'{sorted(cat_ids, key=str)}', 'annotation', ann_id)
        img_id = ann.get('image_id')
        if _is_id(img_id) and img_id not in img_ids:
            ignored.add(f'image_id {img_id!r} is not among the images',
                        'annotation', ann_id)

    if fatal:
        raise AnnotationError(
            f'annotation file {ann_file} cannot be used; {len(fatal)} '
            f'problem(s) found:\n{fatal.bullets()}')
    return ignored


def coco_from_dict(data: dict) -> COCO:
    """pycocotools' COCO api over an already parsed file, quietly."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def clean_box(bbox: Sequence[float], area: float, width: float,
              height: float) -> Tuple[Optional[List[float]], str]:
    """A COCO box ``[x, y, w, h]`` made usable for training.

    Returns:
        ``(xyxy, '')`` for a box inside the image; ``(xyxy clipped to the
        image, 'clipped')`` for one that extends past its border; ``(None,
        reason)`` for one that cannot be used.
    """
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return None, 'zero or negative width or height'
    if w < 1 or h < 1 or area <= 0:
        return None, 'narrower or lower than 1 pixel, or of zero area'
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None, 'outside the image (or less than 1 pixel inside)'
    clipped = (x1, y1, x2, y2) != (x, y, x + w, y + h)
    return [x1, y1, x2, y2], 'clipped' if clipped else ''


@DATASETS.register_module()
class CocoDataset(BaseDetDataset):
    """Images and boxes of a COCO-format json file.

    The classes come from ``metainfo['classes']`` (default: COCO's 80) and
    are matched by name to the file's categories, so category ids need not
    be contiguous and a custom dataset can select and reorder its classes
    with ``metainfo=dict(classes=(...))``. Without such metainfo, a file that
    is not COCO uses its own categories (sorted by id); ``self.metainfo`` is
    updated accordingly once the annotations are loaded.

    Each item of ``data_list``::

        dict(img_id=int, img_path=str, height=int, width=int,
             instances=[dict(bbox=[x1, y1, x2, y2], bbox_label=int,
                             ignore_flag=0 or 1), ...])

    ``ignore_flag`` is 1 for crowd boxes. Boxes of unselected categories
    are skipped.

    The file is checked in one pass when it is loaded (see
    :func:`check_coco`): problems that make it unusable or ambiguous (not
    JSON, not COCO, missing or duplicate ids, unknown category ids, boxes
    that are not numbers or are NaN or infinite) raise one
    :class:`AnnotationError` that lists them all with their ids. Boxes that
    are merely out of shape are fixed, with one warning naming the
    annotation ids: boxes that extend past the image border are clipped to
    it; boxes with zero or negative width or height, narrower or lower than
    one pixel, of zero area or outside the image are dropped.

    An image that cannot be loaded (see ``LoadImageFromFile``) is skipped
    with a warning naming the file while training (another image is drawn
    in its place); in ``test_mode`` its error stops the run.

    ``filter_cfg=dict(filter_empty_gt=True, min_size=32)`` (unset keys: no
    filtering) drops, outside ``test_mode``, images without any non-crowd
    box and images whose shorter side is below ``min_size``.

    Args:
        backend_args: accepted so that MMDetection configs work; the json is
            read from local disk by pycocotools.
        *args, **kwargs: as ``mmengine.dataset.BaseDataset``; the image
            folder is ``data_prefix['img']``.
    """

    METAINFO = dict(classes=COCO_CLASSES, palette=make_palette(80))

    def load_data_list(self) -> List[dict]:
        data = read_coco_json(self.ann_file, self.backend_args)
        ignored = check_coco(data, self.ann_file)
        coco = coco_from_dict(data)
        classes, self.cat_ids = match_classes(coco, self._metainfo['classes'],
                                              self.ann_file)
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self._metainfo['classes'] = classes
        if len(self._metainfo.get('palette', ())) < len(classes):
            self._metainfo['palette'] = make_palette(len(classes))

        # parse_data_info records what it dropped or clipped here.
        self._box_fixes = Findings()
        data_list = []
        for img_id in coco.getImgIds():
            data_list.append(
                self.parse_data_info(
                    dict(
                        raw_img_info=coco.imgs[img_id],
                        raw_ann_info=coco.imgToAnns[img_id])))
        for findings, action in ((ignored, 'ignored'),
                                 (self._box_fixes, 'fixed')):
            if findings:
                print_log(
                    f'{self.ann_file}: {len(findings)} annotation(s) '
                    f'{action}:\n{findings.bullets()}',
                    logger='current',
                    level=logging.WARNING)
        del self._box_fixes
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """One image's record from its COCO image and annotation dicts.

        Boxes are made usable with :func:`clean_box`; what was dropped or
        clipped is recorded for the warning of :meth:`load_data_list`.
        """
        img_info = raw_data_info['raw_img_info']
        width, height = img_info['width'], img_info['height']
        fixes = getattr(self, '_box_fixes', None)
        instances = []
        for ann in raw_data_info['raw_ann_info']:
            if ann['category_id'] not in self.cat2label:
                continue
            area = ann.get('area', ann['bbox'][2] * ann['bbox'][3])
            bbox, fix = clean_box(ann['bbox'], area, width, height)
            if fix and fixes is not None:
                what = ('clipped to the image' if bbox is not None else
                        f'dropped: {fix}')
                fixes.add(what, 'annotation', ann['id'])
            if bbox is None:
                continue
            instances.append(
                dict(
                    bbox=bbox,
                    bbox_label=self.cat2label[ann['category_id']],
                    ignore_flag=int(bool(ann.get('iscrowd', 0)))))
        return dict(
            img_id=img_info['id'],
            img_path=join_path(
                self.data_prefix.get('img', ''), img_info['file_name']),
            height=height,
            width=width,
            instances=instances)
