"""COCO-format detection dataset."""
import colorsys
import contextlib
import io
import logging
from typing import List, Optional, Sequence, Tuple

from mmengine.dataset import BaseDataset
from mmengine.fileio import join_path
from mmengine.logging import print_log
from pycocotools.coco import COCO

from tood.registry import DATASETS

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


@DATASETS.register_module()
class CocoDataset(BaseDataset):
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

    ``ignore_flag`` is 1 for crowd boxes. Boxes narrower or lower than one
    pixel, of zero area, outside the image or of unselected categories are
    dropped.

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

    def __init__(self,
                 *args,
                 backend_args: Optional[dict] = None,
                 **kwargs) -> None:
        self.backend_args = backend_args
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        coco = load_coco(self.ann_file)
        classes, self.cat_ids = match_classes(coco, self._metainfo['classes'],
                                              self.ann_file)
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self._metainfo['classes'] = classes
        if len(self._metainfo.get('palette', ())) < len(classes):
            self._metainfo['palette'] = make_palette(len(classes))

        data_list = []
        for img_id in coco.getImgIds():
            data_list.append(
                self.parse_data_info(
                    dict(
                        raw_img_info=coco.imgs[img_id],
                        raw_ann_info=coco.imgToAnns[img_id])))
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """One image's record from its COCO image and annotation dicts."""
        img_info = raw_data_info['raw_img_info']
        width, height = img_info['width'], img_info['height']
        instances = []
        for ann in raw_data_info['raw_ann_info']:
            if ann['category_id'] not in self.cat2label:
                continue
            x, y, w, h = ann['bbox']
            overlap_w = max(0, min(x + w, width) - max(x, 0))
            overlap_h = max(0, min(y + h, height) - max(y, 0))
            if (w < 1 or h < 1 or ann.get('area', w * h) <= 0
                    or overlap_w * overlap_h == 0):
                continue
            instances.append(
                dict(
                    bbox=[float(x), float(y),
                          float(x + w),
                          float(y + h)],
                    bbox_label=self.cat2label[ann['category_id']],
                    ignore_flag=int(bool(ann.get('iscrowd', 0)))))
        return dict(
            img_id=img_info['id'],
            img_path=join_path(
                self.data_prefix.get('img', ''), img_info['file_name']),
            height=height,
            width=width,
            instances=instances)

    def filter_data(self) -> List[dict]:
        if self.test_mode or not self.filter_cfg:
            return self.data_list
        filter_empty_gt = self.filter_cfg.get('filter_empty_gt', False)
        min_size = self.filter_cfg.get('min_size', 0)
        kept = []
        for info in self.data_list:
            if filter_empty_gt and all(inst['ignore_flag']
                                       for inst in info['instances']):
                continue
            if min(info['width'], info['height']) < min_size:
                continue
            kept.append(info)
        return kept

    def get_cat_ids(self, idx: int) -> List[int]:
        """Labels (not category ids, as in MMDetection) of image ``idx``."""
        return [
            inst['bbox_label'] for inst in self.get_data_info(idx)['instances']
        ]
