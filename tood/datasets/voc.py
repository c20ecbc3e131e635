"""Pascal VOC-format detection dataset (XML annotations, split files)."""
import logging
import math
import os.path as osp
import threading
import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from mmengine import fileio
from mmengine.fileio import join_path
from mmengine.logging import print_log
from mmengine.utils import is_abs
from PIL import Image, UnidentifiedImageError

from tood.datasets.base_det_dataset import BaseDetDataset
from tood.datasets.findings import Findings
from tood.datasets.transforms.image_loading import opencv_pixel_limit
from tood.errors import AnnotationError
from tood.registry import DATASETS
from tood.visualization.palette import make_palette

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse',
               'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
               'tvmonitor')

# EXIF orientations that turn the stored image by 90 degrees: the decoded
# image (LoadImageFromFile applies the tag) has width and height swapped.
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def read_split_file(path: str,
                    backend_args: Optional[dict] = None) -> List[str]:
    """Image ids of a VOC split file (``ImageSets/Main/<split>.txt``).

    One id per line; only a line's first token is used, so the class
    files of VOC (``aeroplane_train.txt``: ``000005 -1``) read as the whole
    split. Blank lines are skipped.

    Raises:
        AnnotationError: the file does not exist or cannot be read.
    """
    try:
        text = fileio.get_text(path, backend_args=backend_args)
    except FileNotFoundError:
        raise AnnotationError(
            f'split file {path} does not exist (VOC lists the images of a '
            'split in ImageSets/Main/<split>.txt)') from None
    except (OSError, UnicodeDecodeError) as error:
        raise AnnotationError(
            f'split file {path} cannot be read: {error}') from None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def voc_root_of(split_file: str) -> Optional[str]:
    """The VOC folder (holding ``Annotations/`` and ``JPEGImages/``) of a
    split file under ``<root>/ImageSets/<kind>/``; None if the file is not
    in such a folder."""
    parts = osp.normpath(split_file).split(osp.sep)
    if len(parts) >= 3 and parts[-3] == 'ImageSets':
        return osp.sep.join(parts[:-3]) or '.'
    return None


# Image.open reads the header only. Pillow's decompression-bomb check
# refuses, already there, images over twice Image.MAX_IMAGE_PIXELS
# (179 M pixels), which large aerial and pathology images are; the images
# are decoded by OpenCV, against its own limit (opencv_pixel_limit), so the
# check is lifted while such a header is read (under a lock: it is a
# module setting of Pillow's).
_PILLOW_LIMIT_LOCK = threading.Lock()


def _open_header(path: str) -> Tuple[int, int, Optional[int]]:
    """``(width, height, EXIF orientation)`` from the header of ``path``."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                return (*img.size, _orientation(img))
        except Image.DecompressionBombError:
            pass
        with _PILLOW_LIMIT_LOCK:
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as img:
                    return (*img.size, _orientation(img))
            finally:
                Image.MAX_IMAGE_PIXELS = limit


def _orientation(img: Image.Image) -> Optional[int]:
    """The EXIF orientation found in the header. ``Image.getexif`` itself
    (the base class's), since PNG's override decodes the whole image to
    look for EXIF data after the pixels."""
    return Image.Image.getexif(img).get(_EXIF_ORIENTATION)


def image_size(path: str,
               backend_args: Optional[dict] = None) -> Tuple[int, int]:
    """``(width, height)`` of an image file as ``LoadImageFromFile`` will
    decode it (EXIF rotation applied), from its header alone, whatever
    its size (Pillow's pixel limit guards decoding, which is not done
    here).

    Raises:
        FileNotFoundError: no such file.
        OSError: a file that is not an image Pillow recognises.
    """
    with fileio.get_local_path(path, backend_args=backend_args) as local:
        width, height, orientation = _open_header(local)
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return width, height


def _positive_int(text: Optional[str]) -> Optional[int]:
    """``'480'`` or ``'480.0'`` as 480; None for text that is absent, not
    a number or not positive (the image's own size is used then)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return int(value) if math.isfinite(value) and value > 0 else None


ParsedObject = Tuple[str, int, List[float]]  # name, difficult, 1-based xyxy


def parse_voc_xml(
        root: ET.Element) -> Tuple[Optional[Tuple[int, int]], List[Union[
            ParsedObject, str]]]:
    """The recorded size and the objects of one parsed VOC annotation.

    Returns:
        ``(size, objects)``: ``size`` is ``(width, height)`` from
        ``<size>``, None where it is absent or not positive. Each object is
        ``(name, difficult, [xmin, ymin, xmax, ymax])`` with the XML's
        1-based corners as floats, or a string saying why it cannot be
        read (no name, no ``bndbox``, a corner that is not a finite number,
        a ``difficult`` that is not a finite number).
    """
    size = None
    width = _positive_int(root.findtext('size/width'))
    height = _positive_int(root.findtext('size/height'))
    if width is not None and height is not None:
        size = (width, height)
    objects: List[Union[ParsedObject, str]] = []
    for obj in root.findall('object'):
        name = (obj.findtext('name') or '').strip()
        if not name:
            objects.append('has no <name>')
            continue
        try:
            difficult = int(float(obj.findtext('difficult') or 0))
        except (ValueError, OverflowError):  # not a number, NaN, infinite
            objects.append('<difficult> is not a finite number (0 or 1)')
            continue
        box = obj.find('bndbox')
        if box is None:
            objects.append('has no <bndbox>')
            continue
        try:
            corners = [
                float(box.findtext(key))
                for key in ('xmin', 'ymin', 'xmax', 'ymax')
            ]
        except (TypeError, ValueError):
            objects.append('<bndbox> lacks one of xmin, ymin, xmax, ymax '
                           'or has one that is not a number')
            continue
        if not all(math.isfinite(v) for v in corners):
            objects.append('<bndbox> has a NaN or infinite corner')
            continue
        objects.append((name, difficult, corners))
    return size, objects


def voc_box(corners: Sequence[float], width: int,
            height: int) -> Tuple[Optional[List[float]], str]:
    """A VOC ``bndbox`` in the model's 0-based ``[x1, y1, x2, y2]``.

    MMDetection 3's ``XMLDataset`` reads VOC this way and so does this
    toolbox, so that boxes, checkpoints and numbers carry over: each corner
    is truncated to an integer (``int(float(text))``) and shifted by one,
    ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax - 1, y2 = ymax - 1``. VOC's
    corners are 1-based and inclusive (a box covers pixel columns ``xmin``
    to ``xmax``), so the box is one pixel narrower and lower than the
    pixels it covers (its width is ``xmax - xmin``); the VOC devkit's
    ``+ 1`` in box sizes is applied by ``VOCMetric``, which therefore
    gives the devkit's numbers.

    Args:
        corners: ``[xmin, ymin, xmax, ymax]`` as in the XML.
        width, height: the image's size.
    Returns:
        ``(box, '')`` for a box inside the image; ``(box clipped to the
        image, i.e. to 1-based corners in [1, width] x [1, height],
        'clipped')`` for one that extends past it; ``(None, reason)`` for
        one with zero or negative width or height or that lies outside the
        image.
    """
    xmin, ymin, xmax, ymax = (int(v) for v in corners)
    if xmax <= xmin or ymax <= ymin:
        return None, 'zero or negative width or height'
    cx1, cx2 = max(xmin, 1), min(xmax, width)
    cy1, cy2 = max(ymin, 1), min(ymax, height)
    if cx2 <= cx1 or cy2 <= cy1:
        return None, 'outside the image (or less than 1 pixel inside)'
    clipped = (cx1, cy1, cx2, cy2) != (xmin, ymin, xmax, ymax)
    box = [float(cx1 - 1), float(cy1 - 1), float(cx2 - 1), float(cy2 - 1)]
    return box, 'clipped' if clipped else ''


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` lies in ``folder`` or below it (as written: links
    are the dataset owner's business)."""
    path, folder = osp.abspath(path), osp.abspath(folder)
    return osp.commonpath([path, folder]) == folder


@DATASETS.register_module()
class VOCDataset(BaseDetDataset):
    """Images and boxes of a Pascal VOC folder.

    Layout (VOC's, as MMDetection reads it)::

        <voc root>/Annotations/<id>.xml
        <voc root>/JPEGImages/<id>.jpg
        <voc root>/ImageSets/Main/<split>.txt   one image id per line

    ``ann_file`` is a split file or a list of them, whose images are
    concatenated in order (VOC07+12:
    ``ann_file=['VOC2007/ImageSets/Main/trainval.txt',
    'VOC2012/ImageSets/Main/trainval.txt']`` with
    ``data_root='data/VOCdevkit/'``). The VOC root of each split is
    ``data_prefix['sub_data_root']`` when set (MMDetection's key; then all
    splits share it), else the folder above the split file's ``ImageSets``
    (else ``data_root``); other ``data_prefix`` keys, such as an ``img``
    inherited from a COCO config, are not used. MMDetection's way, a
    ``ConcatDataset`` of one ``VOCDataset`` per year, works too.

    The classes come from ``metainfo['classes']`` (default: VOC's 20) and
    select and order the labels: label ``i`` is ``classes[i]``; objects of
    other classes are skipped with one warning that lists their names.
    Boxes are read as MMDetection reads VOC (see :func:`voc_box`: 1-based
    corners minus one). ``difficult`` objects get ``ignore_flag=1``: the
    model does not train on them and ``VOCMetric`` ignores them as the
    devkit does (neither a hit nor a false positive); with
    ``use_difficult=True`` they are ordinary boxes outside ``test_mode``.

    Every annotation and image header is read in one pass when the dataset
    loads. Problems that make the data unusable raise one
    :class:`AnnotationError` listing them all with file names: a split file
    that is missing, ids listed twice, an XML file that is missing or not
    valid XML, objects without a name or readable ``bndbox``, an image that
    is missing or not an image, a ``<size>`` that disagrees with the image
    (its boxes would not fit it), and classes none of which are among
    ``metainfo['classes']``. Boxes that are merely out of shape are fixed,
    with one warning naming each ``file.xml#object number``: boxes with
    zero or negative width or height and boxes outside the image are
    dropped (BCCD has two such), boxes that extend past the image are
    clipped to it. An XML without ``<size>`` takes the image's.

    Each item of ``data_list`` is that of ``BaseDetDataset`` (``img_id``
    is the image's id, a string such as ``'000005'``) plus ``xml_path``.

    ``filter_cfg`` takes ``filter_empty_gt`` and ``min_size`` as the COCO
    dataset does, and MMDetection's ``bbox_min_size``: outside
    ``test_mode``, boxes narrower or lower than it are marked ignored.

    Args:
        img_subdir, ann_subdir: the image and XML folders of a VOC root.
        img_suffix: the image files are ``<id><img_suffix>``.
        use_difficult: train on ``difficult`` objects (outside
            ``test_mode``; evaluation always ignores them).
        **kwargs: as ``BaseDetDataset`` (``ann_file`` may be a list).
    """

    METAINFO = dict(
        classes=VOC_CLASSES, palette=make_palette(len(VOC_CLASSES)))

    def __init__(self,
                 *args,
                 img_subdir: str = 'JPEGImages',
                 ann_subdir: str = 'Annotations',
                 img_suffix: str = '.jpg',
                 use_difficult: bool = False,
                 **kwargs) -> None:
        self.img_subdir = img_subdir
        self.ann_subdir = ann_subdir
        self.img_suffix = img_suffix
        self.use_difficult = use_difficult
        super().__init__(*args, **kwargs)

    @classmethod
    def config_paths(cls, dataset_cfg: Dict[str, Any]) -> List[str]:
        """The split files and, when set, ``data_prefix['sub_data_root']``
        (other ``data_prefix`` keys are not read)."""
        data_root = dataset_cfg.get('data_root') or ''
        files = dataset_cfg.get('ann_file') or []
        files = [files] if isinstance(files, str) else list(files)
        paths = [osp.join(data_root, f) if data_root else f for f in files]
        sub_root = (dataset_cfg.get('data_prefix') or {}).get('sub_data_root')
        if isinstance(sub_root, str):
            paths.append(osp.join(data_root, sub_root) if data_root else
                         sub_root)
        return paths

    def _join_prefix(self) -> None:
        """mmengine's joining of ``data_root``, for one split file or a
        list of them (``self.ann_files``)."""
        files = self.ann_file
        files = [files] if isinstance(files, str) else list(files or [])
        self.ann_file = ''
        super()._join_prefix()
        self.ann_files = [
            join_path(self.data_root, f)
            if self.data_root and not is_abs(f) else f for f in files if f
        ]
        self.ann_file = (
            self.ann_files[0] if len(self.ann_files) == 1 else self.ann_files)

    def _voc_root(self, split_file: str) -> str:
        root = self.data_prefix.get('sub_data_root')
        if root is None:
            root = voc_root_of(split_file)
        if root is None:
            root = self.data_root
        if not root:
            raise AnnotationError(
                f'cannot tell the VOC folder of {split_file} (it is not in '
                "an ImageSets/ folder): set data_prefix=dict(sub_data_root="
                "'path/to/VOC2007/') or data_root")
        return root

    def load_data_list(self) -> List[dict]:
        if not self.ann_files:
            raise AnnotationError(
                'the dataset has no ann_file: set it to a VOC split file, '
                "e.g. 'VOC2007/ImageSets/Main/trainval.txt', or a list of "
                'them')
        classes = tuple(self._metainfo['classes'])
        self.cat2label = {name: i for i, name in enumerate(classes)}
        if len(self._metainfo.get('palette', ())) < len(classes):
            self._metainfo['palette'] = make_palette(len(classes))

        # Every (voc root, id) in split order; then check ids are unique.
        images: List[Tuple[str, str]] = []
        for split_file in self.ann_files:
            root = self._voc_root(split_file)
            images += [(root, img_id)
                       for img_id in read_split_file(split_file,
                                                     self.backend_args)]
        fatal, fixes = Findings(), Findings()
        roots_of: Dict[str, List[str]] = {}
        for root, img_id in images:
            roots_of.setdefault(img_id, []).append(root)
        for img_id, roots in roots_of.items():
            if len(roots) > 1:
                where = ', '.join(sorted(set(roots)))
                fatal.add(f'listed {len(roots)} times by the split files (in '
                          f'{where}); each image must appear once', 'image id',
                          img_id)

        self._unknown: Counter = Counter()
        self._unknown_files: Dict[str, List[str]] = {}
        data_list = []
        seen = set()
        for root, img_id in images:
            if img_id in seen:
                continue
            seen.add(img_id)
            info = self._load_image_info(root, img_id, fatal, fixes)
            if info is not None:
                data_list.append(info)

        num_objects = sum(len(info['instances']) for info in data_list)
        if self._unknown and not num_objects and not fatal:
            for name in self._unknown:
                fatal.add(
                    'no object is of the dataset\'s classes '
                    f'{list(classes)}: set metainfo=dict(classes=(...)) to '
                    'the names in the annotations', 'annotated name',
                    repr(name))
        if fatal:
            raise AnnotationError(
                f'VOC annotations of {", ".join(self.ann_files)} cannot be '
                f'used; {len(fatal)} problem(s) found:\n{fatal.bullets()}')
        if fixes:
            print_log(
                f'{", ".join(self.ann_files)}: {len(fixes)} box(es) fixed '
                f'(file.xml#object number, from 1):\n{fixes.bullets()}',
                logger='current',
                level=logging.WARNING)
        if self._unknown:
            files = self._unknown_files
            listed = ', '.join(
                f'{name!r} ({count} in {", ".join(files[name][:3])}'
                f'{" ..." if len(files[name]) > 3 else ""})'
                for name, count in self._unknown.most_common())
            print_log(
                f'{", ".join(self.ann_files)}: objects of classes that are '
                f'not among the dataset\'s classes {list(classes)} are '
                f'skipped: {listed}. Add them to metainfo.classes to train '
                'on them.',
                logger='current',
                level=logging.WARNING)
        del self._unknown, self._unknown_files
        return data_list

    def _load_image_info(self, root: str, img_id: str, fatal: Findings,
                         fixes: Findings) -> Optional[dict]:
        """One image's record; problems go to ``fatal`` (unusable) and
        ``fixes`` (boxes dropped or clipped). None where the image or its
        XML cannot be used."""
        xml_name = f'{img_id}.xml'
        xml_path = join_path(root, self.ann_subdir, xml_name)
        img_path = join_path(root, self.img_subdir,
                             f'{img_id}{self.img_suffix}')
        outside = [
            path for path, folder in ((xml_path, self.ann_subdir),
                                      (img_path, self.img_subdir))
            if not _inside(path, join_path(root, folder))
        ]
        if outside:
            fatal.add(
                f'leads outside the VOC folder {osp.abspath(root)}, to '
                f'{", ".join(osp.abspath(p) for p in outside)}; an id names '
                f'a file in {self.ann_subdir}/ and {self.img_subdir}/',
                'image id', img_id)
            return None
        try:
            # Bytes, so that the XML's own encoding declaration applies.
            xml_root = ET.fromstring(
                fileio.get(xml_path, backend_args=self.backend_args))
        except FileNotFoundError:
            fatal.add(f'no such file in {join_path(root, self.ann_subdir)}',
                      'annotation file', xml_name)
            return None
        except ET.ParseError as error:
            fatal.add(f'not valid XML ({error})', 'annotation file', xml_name)
            return None
        except OSError as error:
            fatal.add(f'cannot be read ({error})', 'annotation file',
                      xml_name)
            return None
        recorded, objects = parse_voc_xml(xml_root)

        try:
            width, height = image_size(img_path, self.backend_args)
        except FileNotFoundError:
            fatal.add(f'no such file in {join_path(root, self.img_subdir)}',
                      'image', osp.basename(img_path))
            return None
        except (OSError, UnidentifiedImageError) as error:
            fatal.add(f'not an image that can be read ({error})', 'image',
                      osp.basename(img_path))
            return None
        limit = opencv_pixel_limit()
        if width * height > limit:
            fatal.add(
                f'{width}x{height} = {width * height:,} pixels, more than '
                f'OpenCV decodes ({limit:,}, its OPENCV_IO_MAX_IMAGE_PIXELS): '
                'set that environment variable to at least '
                f'{width * height} before starting', 'image',
                osp.basename(img_path))
            return None
        if recorded is not None and recorded != (width, height):
            hint = (' (width and height swapped: an EXIF rotation the '
                    'annotation tool did not apply?)'
                    if recorded == (height, width) else '')
            fatal.add(
                f'<size> says {recorded[0]}x{recorded[1]} (width x height) '
                f'but the image is {width}x{height}{hint}, so its boxes '
                'would not fit it', 'annotation file', xml_name)
            return None

        min_box = None if self.test_mode else (self.filter_cfg or {}).get(
            'bbox_min_size')
        instances = []
        for number, obj in enumerate(objects, start=1):
            where = f'{xml_name}#{number}'
            if isinstance(obj, str):
                fatal.add(obj, 'object', where)
                continue
            name, difficult, corners = obj
            if name not in self.cat2label:
                self._unknown[name] += 1
                files = self._unknown_files.setdefault(name, [])
                if not files or files[-1] != xml_name:
                    files.append(xml_name)
                continue
            bbox, fix = voc_box(corners, width, height)
            if fix:
                fixes.add('clipped to the image' if bbox is not None else
                          f'dropped: {fix}', 'object', where)
            if bbox is None:
                continue
            ignore = bool(difficult) and (self.test_mode
                                          or not self.use_difficult)
            if min_box is not None and (bbox[2] - bbox[0] < min_box
                                        or bbox[3] - bbox[1] < min_box):
                ignore = True
            instances.append(
                dict(
                    bbox=bbox,
                    bbox_label=self.cat2label[name],
                    ignore_flag=int(ignore)))
        return dict(
            img_id=img_id,
            img_path=img_path,
            xml_path=xml_path,
            height=height,
            width=width,
            instances=instances)
