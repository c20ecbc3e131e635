"""Pascal VOC XML annotations to a COCO detection json.

The boxes are those ``VOCDataset`` reads (MMDetection's convention, see
``tood.datasets.voc.voc_box``: corners minus one), written as
``[x1, y1, x2 - x1, y2 - y1]``, so ``CocoDataset`` on the json yields the
very boxes ``VOCDataset`` yields on the XML; ``difficult`` objects become
crowd regions (``iscrowd=1``), which ``CocoDataset`` ignores as
``VOCDataset`` ignores difficult ones. The input is checked by
``VOCDataset`` itself, so a bad file is refused (or a degenerate box
dropped) with the same messages.
"""
import os.path as osp
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence

from mmengine.fileio import join_path

from tood.datasets.voc import VOCDataset, read_split_file, voc_root_of


def voc_class_names(split_files: Sequence[str],
                    sub_data_root: Optional[str] = None,
                    ann_subdir: str = 'Annotations') -> List[str]:
    """The object names found in the XML files of the splits, sorted.

    Files that are missing or not valid XML are passed over here; the
    conversion reports them.
    """
    names = set()
    for split_file in split_files:
        root = sub_data_root or voc_root_of(split_file) or osp.dirname(
            split_file)
        for img_id in read_split_file(split_file):
            try:
                tree = ET.parse(join_path(root, ann_subdir, f'{img_id}.xml'))
            except (OSError, ET.ParseError):
                continue
            for obj in tree.getroot().findall('object'):
                name = (obj.findtext('name') or '').strip()
                if name:
                    names.add(name)
    return sorted(names)


def voc_to_coco(split_files: Sequence[str],
                classes: Optional[Sequence[str]] = None,
                img_root: Optional[str] = None,
                sub_data_root: Optional[str] = None,
                img_subdir: str = 'JPEGImages',
                ann_subdir: str = 'Annotations',
                img_suffix: str = '.jpg') -> Dict[str, list]:
    """A COCO detection dict of the images of VOC split files.

    Args:
        split_files: ``<voc root>/ImageSets/Main/<split>.txt`` files; their
            images are concatenated in order.
        classes: the category names, in id order (ids from 1); objects of
            other classes are left out, with ``VOCDataset``'s warning
            listing them. Default: every name in the XML files, sorted.
        img_root: ``file_name`` of each image is relative to this folder
            (the config's ``data_root`` + ``data_prefix['img']``); default:
            the common folder of the VOC roots.
        sub_data_root, img_subdir, ann_subdir, img_suffix: as
            ``VOCDataset`` (the VOC root defaults to the folder above each
            split file's ``ImageSets``).
    Returns:
        ``dict(images, annotations, categories)``; images carry their VOC
        id as ``voc_id``.
    Raises:
        AnnotationError: as ``VOCDataset`` (missing or invalid files,
            sizes that disagree with the images, unusable objects).
    """
    split_files = [split_files] if isinstance(split_files,
                                              str) else list(split_files)
    if classes is None:
        classes = voc_class_names(split_files, sub_data_root, ann_subdir)
    prefix = {} if sub_data_root is None else dict(sub_data_root=sub_data_root)
    dataset = VOCDataset(
        ann_file=split_files,
        metainfo=dict(classes=tuple(classes)),
        data_prefix=prefix,
        img_subdir=img_subdir,
        ann_subdir=ann_subdir,
        img_suffix=img_suffix,
        test_mode=True,
        serialize_data=False)
    records = dataset.data_list
    if img_root is None:
        img_root = osp.commonpath([osp.abspath(r['img_path'])
                                   for r in records]) if records else '.'
        if len(records) == 1:
            img_root = osp.dirname(img_root)
    images, annotations = [], []
    for image_id, record in enumerate(records, start=1):
        images.append(
            dict(
                id=image_id,
                file_name=osp.relpath(
                    osp.abspath(record['img_path']), osp.abspath(img_root)),
                width=record['width'],
                height=record['height'],
                voc_id=record['img_id']))
        for inst in record['instances']:
            x1, y1, x2, y2 = inst['bbox']
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=inst['bbox_label'] + 1,
                    bbox=[x1, y1, x2 - x1, y2 - y1],
                    area=(x2 - x1) * (y2 - y1),
                    iscrowd=inst['ignore_flag']))
    categories = [
        dict(id=i + 1, name=name, supercategory='none')
        for i, name in enumerate(classes)
    ]
    return dict(images=images, annotations=annotations, categories=categories)
