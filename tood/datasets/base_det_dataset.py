"""What every detection dataset of the tood scope shares.

``CocoDataset`` and ``VOCDataset`` differ only in how they read their
annotation files into ``data_list``; the handling of unreadable images,
``filter_cfg`` and ``get_cat_ids`` is the same, so it lives here.
"""
import logging
import os.path as osp
from typing import Any, Dict, List, Optional

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from tood.errors import ImageLoadError


def paths_by_convention(dataset_cfg: Dict[str, Any]) -> List[str]:
    """What a dataset config reads by mmengine's convention: ``ann_file``
    and every ``data_prefix`` folder, joined to ``data_root`` (as
    ``BaseDataset`` joins them)."""
    data_root = dataset_cfg.get('data_root') or ''

    def join(path: str) -> str:
        return osp.join(data_root, path) if data_root else path

    paths = []
    ann_file = dataset_cfg.get('ann_file')
    if isinstance(ann_file, str) and ann_file:
        paths.append(join(ann_file))
    for prefix in (dataset_cfg.get('data_prefix') or {}).values():
        if isinstance(prefix, str):
            paths.append(join(prefix))
    return paths


class BaseDetDataset(BaseDataset):
    """A ``BaseDataset`` whose ``data_list`` items are detection records.

    Each item::

        dict(img_id=int or str, img_path=str, height=int, width=int,
             instances=[dict(bbox=[x1, y1, x2, y2], bbox_label=int,
                             ignore_flag=0 or 1), ...])

    ``ignore_flag`` 1 marks boxes that are neither trained on nor counted
    by the metrics (COCO crowd regions, VOC ``difficult`` objects).

    An image that cannot be loaded (``LoadImageFromFile`` raises
    :class:`ImageLoadError`) is skipped with a warning naming the file while
    training (mmengine draws another image in its place); in ``test_mode``
    its error stops the run, since a metric over fewer images would be
    silently wrong.

    ``filter_cfg=dict(filter_empty_gt=True, min_size=32)`` (unset keys: no
    filtering) drops, outside ``test_mode``, images without any non-ignored
    box and images whose shorter side is below ``min_size``.

    Args:
        backend_args: mmengine file backend arguments, kept for the
            subclasses that read files through ``mmengine.fileio``.
        *args, **kwargs: as ``mmengine.dataset.BaseDataset``.
    """

    def __init__(self,
                 *args,
                 backend_args: Optional[dict] = None,
                 **kwargs) -> None:
        self.backend_args = backend_args
        super().__init__(*args, **kwargs)

    @classmethod
    def config_paths(cls, dataset_cfg: Dict[str, Any]) -> List[str]:
        """The files and folders that a config of this dataset reads, for
        the tools to check before they build anything (see
        ``tood.datasets.preparers.stage_paths``)."""
        return paths_by_convention(dataset_cfg)

    def prepare_data(self, idx: int) -> Any:
        """The pipeline's output for image ``idx``; None (mmengine then
        draws another image) for an unreadable image while training."""
        try:
            return super().prepare_data(idx)
        except ImageLoadError as error:
            if self.test_mode:
                raise
            print_log(
                f'skipping an image while training: {error}',
                logger='current',
                level=logging.WARNING)
            return None

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
