"""Images of a dataset as the model sees them, with their boxes."""
import os.path as osp
from typing import List, Optional

import numpy as np
from mmengine.config import Config

from tood.output_paths import output_names, refuse_overwriting_inputs
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
        out_dir: the images go to ``{out_dir}/{name}.png``: the image
            file's stem, distinct per image
            (``tood.output_paths.output_names``), else the image id.
        num_images: the first so many items; None or <= 0: all.
        progress: show a progress bar.
    Returns:
        The files written.
    Raises:
        OutputConflictError: a drawing would be written over an image of
            the dataset (``out_dir`` is its image folder); checked before
            anything is written.
    """
    from mmengine.utils import ProgressBar

    total = len(dataset)
    if num_images is not None and num_images > 0:
        total = min(total, num_images)
    infos = [dataset.get_data_info(index) for index in range(len(dataset))]
    inputs = [info.get('img_path') for info in infos]
    named = [index for index in range(total) if inputs[index]]
    names = dict(zip(named, output_names([inputs[i] for i in named])))
    outputs = [
        osp.join(out_dir,
                 f'{names.get(index, infos[index].get("img_id", index))}.png')
        for index in range(total)
    ]
    refuse_overwriting_inputs(outputs, filter(None, inputs),
                              'output folder (--output-dir)')
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
        written.append(imwrite(outputs[index], image))
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.file.write('\n')
    return written
