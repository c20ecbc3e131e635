"""Images of a dataset as the model sees them, with their boxes."""
import os.path as osp
from typing import List, Optional

import numpy as np
from mmengine.config import Config

from tood.visualization import draw_detections, imwrite

# Crowd regions (ignored in training and evaluation), RGB.
IGNORED_COLOR = (128, 128, 128)


def build_dataset(cfg: Config, phase: str):
    """The dataset of ``{phase}_dataloader`` (phase: train, val or test)."""
    from tood.registry import DATASETS
    from tood.utils import register_all_modules

    register_all_modules()
    key = f'{phase}_dataloader'
    if not cfg.get(key):
        raise ValueError(f'the config has no {key}')
    return DATASETS.build(cfg[key].dataset)


def browse_dataset(dataset,
                   out_dir: str,
                   num_images: Optional[int] = 20,
                   progress: bool = True) -> List[str]:
    """Draw the ground truth on the pipeline's output images.

    The pipeline runs as in training or testing (resize, flip, ...), so
    what is drawn is what the model is given: boxes in the colour of their
    class and named, crowd boxes in grey.

    Args:
        dataset: e.g. from ``build_dataset``.
        out_dir: the images go to ``{out_dir}/{stem}.png`` (stem of the
            image file, else the image id).
        num_images: the first so many items; None or <= 0: all.
        progress: show a progress bar.
    Returns:
        The files written.
    """
    from mmengine.utils import ProgressBar

    total = len(dataset)
    if num_images is not None and num_images > 0:
        total = min(total, num_images)
    metainfo = dataset.metainfo
    bar = ProgressBar(total) if progress else None
    written = []
    for index in range(total):
        item = dataset[index]
        sample = item['data_samples']
        # (3, H, W) uint8 in the loaded channel order (BGR).
        image = np.ascontiguousarray(item['inputs'].permute(1, 2, 0).numpy())
        ignored = sample.ignored_instances
        if 'bboxes' in ignored and len(ignored.bboxes):
            image = draw_detections(
                image,
                ignored.bboxes,
                ignored.labels,
                class_names=metainfo.get('classes'),
                palette=IGNORED_COLOR)
        gt = sample.gt_instances
        if 'bboxes' in gt:
            image = draw_detections(
                image,
                gt.bboxes,
                gt.labels,
                class_names=metainfo.get('classes'),
                palette=metainfo.get('palette'))
        img_path = sample.metainfo.get('img_path')
        stem = osp.splitext(osp.basename(img_path))[0] if img_path else str(
            sample.metainfo.get('img_id', index))
        written.append(imwrite(osp.join(out_dir, f'{stem}.png'), image))
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.file.write('\n')
    return written
