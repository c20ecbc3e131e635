"""Detect objects in images with a trained checkpoint.

    from tood.apis import init_detector, inference_detector
    model = init_detector('configs/tood/tood_r50_fpn_1x_coco.py',
                          'tood_r50_fpn_1x_coco.pth', device='auto')
    result = inference_detector(model, 'demo.jpg')
    result.pred_instances.bboxes        # (N, 4) xyxy, original pixels
    result.pred_instances.scores        # (N,)
    result.pred_instances.labels        # (N,)
    result.pred_instances.class_names   # N names
"""
import copy
import glob
import json
import logging
import os.path as osp
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.logging import MMLogger, print_log
from mmengine.runner import load_checkpoint

from tood.output_paths import output_names, refuse_overwriting_inputs
from tood.registry import DATASETS, MODELS
from tood.structures import DetDataSample

ImageInput = Union[str, Path, np.ndarray]
# One threshold for every class, or one per class in label order.
ScoreThr = Union[float, Sequence[float]]
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                    '.webp')


def _resolve_device(device: str) -> torch.device:
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    return torch.device(device)


def _config_classes(cfg: Config) -> Optional[Sequence[str]]:
    """Class names a config states: the test dataset's ``metainfo`` or,
    failing that, its dataset type's default metainfo."""
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes:
        return tuple(classes)
    dataset_cls = DATASETS.get(dataset['type']) if isinstance(
        dataset.get('type'), str) else dataset.get('type')
    classes = getattr(dataset_cls, 'METAINFO', {}).get('classes')
    return tuple(classes) if classes else None


def init_detector(config: Union[str, Path, Config],
                  checkpoint: Optional[str] = None,
                  device: str = 'auto',
                  cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """Build the detector of a config and load a checkpoint into it.

    Every tool builds its detector here.

    Args:
        config: a config file or a loaded ``Config``.
        checkpoint: weights to load (through mmengine's ``load_checkpoint``
            and our safe loader); None initialises them as training starts
            (``init_weights``, without pretrained backbone weights) from
            seed 0, so that two calls give the same untrained model (an
            export and its verification, say) and the global random state
            is left as it was.
        device: ``'cpu'``, ``'cuda'``, ``'cuda:1'`` or ``'auto'`` (CUDA if
            available).
        cfg_options: config overrides, as ``--cfg-options``.
    Returns:
        The model in eval mode on ``device``, with ``model.cfg`` (the
        config) and ``model.dataset_meta`` (``classes``, ``palette``) from
        the checkpoint's meta, else from the config, else numbered names.
    """
    from tood.engine import merge_cfg_options, setup_checkpoint_io
    from tood.visualization import make_palette
    from tood.utils import register_all_modules

    register_all_modules()
    # The checkpoint is read with torch's weights_only loader and our
    # allow-list: a file that would run code is refused.
    setup_checkpoint_io()
    if isinstance(config, (str, Path)):
        config = Config.fromfile(str(config))
    elif not isinstance(config, Config):
        raise TypeError(f'config must be a path or a Config, not '
                        f'{type(config).__name__}')
    cfg = copy.deepcopy(config)
    merge_cfg_options(cfg, cfg_options)
    # Pretrained backbone weights are replaced by the checkpoint anyway.
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)

    dataset_meta = None
    if checkpoint is not None:
        ckpt = load_checkpoint(model, checkpoint, map_location='cpu')
        dataset_meta = ckpt.get('meta', {}).get('dataset_meta')
    else:
        # mmengine lists every parameter's initialisation at INFO level when
        # the logger writes no file: hundreds of lines nobody asked for.
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model.init_weights()
        finally:
            logger.setLevel(level)
    if not dataset_meta or not dataset_meta.get('classes'):
        num_classes = model.bbox_head.num_classes
        classes = _config_classes(cfg)
        if classes is None or len(classes) != num_classes:
            print_log(
                f'no class names for the {num_classes} classes in the '
                'checkpoint or config: they are numbered',
                logger='current')
            classes = tuple(f'class_{i}' for i in range(num_classes))
        dataset_meta = dict(classes=classes)
    dataset_meta = dict(dataset_meta)
    if len(dataset_meta.get('palette') or ()) < len(dataset_meta['classes']):
        dataset_meta['palette'] = make_palette(len(dataset_meta['classes']))

    model.dataset_meta = dataset_meta
    model.cfg = cfg
    model.to(_resolve_device(device))
    model.eval()
    return model


def default_input_shape(cfg) -> Optional[Tuple[int, int]]:
    """(H, W) the config's test pipeline makes images: its ``Resize``
    scale as H, W (the larger box a keep-ratio resize fits in), else the
    ``img_size`` of a dataset or ``data_preparer`` that draws fixed-size
    images (the shapes set); None when unknown."""
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    for transform in dataset.get('pipeline') or cfg.get('test_pipeline') or []:
        kind = transform.get('type')
        kind = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
        if kind == 'Resize' and transform.get('scale'):
            scale = transform['scale']
            if isinstance(scale, int):
                return scale, scale
            w, h = scale
            if transform.get('keep_ratio', False):
                # mmcv fits the image inside the long and short edges; a
                # landscape image fills (short, long).
                return min(w, h), max(w, h)
            return h, w
    for source in (dataset, cfg.get('data_preparer') or {}):
        if source.get('img_size'):
            return int(source['img_size']), int(source['img_size'])
    return None


class LoadImageFromArray:
    """Stands in for ``LoadImageFromFile`` when images are arrays already.

    Expects ``results['img']``: (H, W, 3) uint8 BGR, as OpenCV loads it.
    """

    def __call__(self, results: dict) -> dict:
        img = results['img']
        if not isinstance(img, np.ndarray) or img.ndim != 3 or \
                img.shape[2] != 3:
            raise ValueError('images given as arrays must be (H, W, 3) BGR, '
                             f'got {getattr(img, "shape", type(img))}')
        results['img'] = np.ascontiguousarray(img)
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results


def build_test_pipeline(cfg: Config, from_array: bool) -> Compose:
    """The config's test pipeline without ``LoadAnnotations``; with
    ``from_array`` the image comes from ``results['img']`` rather than a
    file."""
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    pipeline = dataset.get('pipeline') or cfg.get('test_pipeline')
    if not pipeline:
        raise ValueError('the config has no test_dataloader.dataset.pipeline'
                         ' (or test_pipeline)')
    transforms = []
    for transform in copy.deepcopy(list(pipeline)):
        kind = transform['type']
        kind = kind if isinstance(kind, str) else kind.__name__
        if kind == 'LoadAnnotations':
            continue
        if kind == 'LoadImageFromFile' and from_array:
            transforms.append(LoadImageFromArray())
            continue
        transforms.append(transform)
    return Compose(transforms)


def label_names(model, labels: torch.Tensor) -> List[str]:
    """The class name of each label (N,), from the model's
    ``dataset_meta``; a label beyond its classes is written as a number."""
    class_names = (getattr(model, 'dataset_meta', None) or {}).get(
        'classes', ())
    return [class_names[i] if i < len(class_names) else str(i)
            for i in labels.tolist()]


def inference_detector(
        model: torch.nn.Module,
        images: Union[ImageInput, Sequence[ImageInput]],
        batch_size: int = 1) -> Union[DetDataSample, List[DetDataSample]]:
    """Detect objects in one image or several.

    Args:
        model: from ``init_detector`` (it needs ``model.cfg``).
        images: a file path, an (H, W, 3) uint8 BGR array, or a list of
            them (paths and arrays may be mixed).
        batch_size: images per forward pass.
    Returns:
        For each image (a single one when ``images`` is not a list or
        tuple) a ``DetDataSample`` on the CPU whose ``pred_instances`` hold
        ``bboxes`` (N, 4) xyxy in the image's pixels, ``scores`` (N,),
        ``labels`` (N,) and ``class_names`` (N names); boxes scoring below
        the config's ``model.test_cfg.score_thr`` are already gone.
    """
    if not hasattr(model, 'cfg'):
        raise ValueError('inference_detector needs model.cfg: build the '
                         'model with init_detector')
    single = not isinstance(images, (list, tuple))
    images = [images] if single else list(images)
    if batch_size < 1:
        raise ValueError(f'batch_size must be positive, got {batch_size}')

    pipelines = {}
    results = []
    for start in range(0, len(images), batch_size):
        items = []
        for img_id, image in enumerate(images[start:start + batch_size],
                                       start):
            from_array = isinstance(image, np.ndarray)
            if from_array not in pipelines:
                pipelines[from_array] = build_test_pipeline(
                    model.cfg, from_array)
            data = dict(img=image) if from_array else dict(
                img_path=str(image))
            data['img_id'] = img_id
            items.append(pipelines[from_array](data))
        with torch.no_grad():
            samples = model.test_step(pseudo_collate(items))
        for sample in samples:
            sample = sample.cpu()
            pred = sample.pred_instances
            pred.class_names = label_names(model, pred.labels)
            results.append(sample)
    return results[0] if single else results


def find_images(source: Union[str, Path]) -> List[str]:
    """The image files an argument names: an image, a folder (its images,
    not recursive) or a glob pattern (``'data/**/*.jpg'`` recurses); sorted.

    Raises:
        FileNotFoundError: nothing matched.
    """
    source = str(source)
    if osp.isdir(source):
        paths = [
            osp.join(source, name) for name in sorted(
                glob.glob('*', root_dir=source))
        ]
    elif osp.isfile(source):
        return [source]
    else:
        paths = sorted(glob.glob(source, recursive=True))
    images = [
        p for p in paths
        if osp.isfile(p) and p.lower().endswith(IMAGE_EXTENSIONS)
    ]
    if not images:
        raise FileNotFoundError(f'no images found at {source!r}')
    return images


def above_threshold(scores: torch.Tensor, labels: torch.Tensor,
                    score_thr: ScoreThr) -> torch.Tensor:
    """(N,) scores and labels -> (N,) bool: which detections reach
    ``score_thr``, one number or one per class (``labels`` index it)."""
    if isinstance(score_thr, (int, float)):
        return scores >= score_thr
    per_class = torch.as_tensor(list(score_thr), dtype=scores.dtype,
                                device=scores.device)
    if labels.numel() and int(labels.max()) >= len(per_class):
        raise ValueError(f'{len(per_class)} score thresholds for labels up '
                         f'to {int(labels.max())}')
    return scores >= per_class[labels]


def detections_to_dict(sample: DetDataSample,
                       image: Optional[str] = None,
                       score_thr: ScoreThr = 0.0) -> dict:
    """A result as plain json-ready data.

    Returns ``dict(image, width, height, bboxes, scores, labels,
    class_names)``; ``bboxes`` as ``[x1, y1, x2, y2]`` in the image's
    pixels, only detections scoring at least ``score_thr`` (one number,
    or one per class), best first.
    """
    pred = sample.pred_instances
    keep = above_threshold(pred.scores, pred.labels,
                           score_thr).nonzero().flatten()
    keep = keep[pred.scores[keep].argsort(descending=True)]
    height, width = sample.metainfo['ori_shape'][:2]
    names = getattr(pred, 'class_names', None)
    labels = pred.labels[keep].tolist()
    return dict(
        image=image if image is not None else sample.metainfo.get(
            'img_path'),
        width=int(width),
        height=int(height),
        bboxes=[[round(float(v), 2) for v in box]
                for box in pred.bboxes[keep].tolist()],
        scores=[round(float(s), 4) for s in pred.scores[keep].tolist()],
        labels=labels,
        class_names=[names[i] for i in keep.tolist()]
        if names is not None else [str(label) for label in labels])


def save_predictions(model: torch.nn.Module,
                     paths: Sequence[str],
                     out_dir: str,
                     score_thr: ScoreThr = 0.3,
                     batch_size: int = 1,
                     progress: bool = True,
                     detect: Optional[Callable[[List[str]],
                                               List[DetDataSample]]] = None
                     ) -> List[str]:
    """Detect objects in image files and write, per image, ``{name}.png``
    (the boxes drawn with class names and scores) and ``{name}.json`` (see
    ``detections_to_dict``), both with detections scoring at least
    ``score_thr``: one number, or one per class in label order (as
    ``tools/infer.py --score-thr auto`` reads them from the model file,
    ``tood.deployment.score_thresholds``). ``name`` is the image's stem,
    distinct per image (``tood.output_paths.output_names``: ``cat.jpg`` and
    ``cat.png`` give ``cat.jpg.png`` and ``cat.png.png``).

    Returns:
        The json files written, in the order of ``paths``.
    Raises:
        OutputConflictError: an output would be written over one of
            ``paths`` (``out_dir`` is the images' folder); checked before
            anything is written.
    """
    import cv2
    from mmengine.utils import ProgressBar

    from tood.visualization import draw_instances, imwrite

    stems = output_names(paths)
    refuse_overwriting_inputs(
        (osp.join(out_dir, f'{stem}{ext}') for stem in stems
         for ext in ('.png', '.json')), paths, 'output folder (--out-dir)')
    meta = getattr(model, 'dataset_meta', None) or {}
    bar = ProgressBar(len(paths)) if progress else None
    written = []
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start:start + batch_size])
        samples = detect(chunk) if detect is not None else \
            inference_detector(model, chunk, batch_size=batch_size)
        for path, stem, sample in zip(chunk, stems[start:], samples):
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            pred = sample.pred_instances
            drawn = draw_instances(
                image,
                pred[above_threshold(pred.scores, pred.labels, score_thr)],
                class_names=meta.get('classes'),
                palette=meta.get('palette'))
            imwrite(osp.join(out_dir, f'{stem}.png'), drawn)
            json_path = osp.join(out_dir, f'{stem}.json')
            with open(json_path, 'w') as f:
                json.dump(
                    detections_to_dict(sample, path, score_thr), f)
            written.append(json_path)
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.file.write('\n')
    return written
