"""Tiny detectors, images and reference detections for the ONNX tests.

The models are untrained; their heads are perturbed so that class
probabilities spread over (0, 1) instead of sitting at the 0.01 prior of
the initialisation (where every score ties and a top-k or a threshold
would compare noise), and so that the offset sampling of eq. (6) and the
deformable convolutions move their sampling points.
"""
import glob
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.runner import save_checkpoint
from shared_data import require_shared_data

from tood.deployment import Detections, compare_detections
from tood.registry import MODELS
from tood.structures import DetDataSample
from tood.utils import register_all_modules

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
R50_CONFIG = osp.join(REPO, 'configs', 'tood', 'tood_r50_fpn_1x_coco.py')
SHAPES_CONFIG = osp.join(REPO, 'configs', 'tood',
                         'tood_r18_fpn_11e_shapes.py')

# A COCO-sized TOOD, smaller: ResNet-18 at 16 channels, FPN and head at
# 32 channels with 2 interactive layers, the 80 classes and five levels
# (strides 8-128) of the R-50 model; test images resized to fit 320x256.
TINY_COCO: Dict = {
    'model.backbone.depth': 18,
    'model.backbone.init_cfg': None,
    'model.backbone.base_channels': 16,
    'model.backbone.stem_channels': 16,
    'model.neck.in_channels': [16, 32, 64, 128],
    'model.neck.out_channels': 32,
    'model.bbox_head.in_channels': 32,
    'model.bbox_head.feat_channels': 32,
    'model.bbox_head.stacked_convs': 2,
    'model.bbox_head.norm_cfg.num_groups': 8,
    # A smaller nms_pre than the default, so that the per-level top-k
    # really cuts (a tiny level has fewer pairs than 1000).
    'model.test_cfg.nms_pre': 300,
    'model.test_cfg.max_per_img': 60,
    'test_dataloader.dataset.pipeline.1.scale': (320, 256),
}


def tiny_config(**options) -> Config:
    """The R-50 COCO config shrunk by ``TINY_COCO`` and ``options``."""
    cfg = Config.fromfile(R50_CONFIG)
    cfg.merge_from_dict({**TINY_COCO, **options})
    return cfg


def spread_head(model: torch.nn.Module, seed: int = 0) -> None:
    """Perturb the head's and the deformable convs' parameters in place
    (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.bbox_head.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.15)
        for name, module in model.named_modules():
            if name.endswith('conv_offset'):
                module.weight.normal_(0, 0.05, generator=g)
                module.bias.normal_(0, 0.5, generator=g)


def build_model(cfg: Config, seed: int = 0) -> torch.nn.Module:
    """The config's model, initialised from ``seed``, head spread, eval
    mode, with ``cfg`` and ``dataset_meta`` as ``init_detector`` sets."""
    register_all_modules()
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    spread_head(model, seed)
    model.cfg = cfg
    num_classes = model.bbox_head.num_classes
    model.dataset_meta = dict(
        classes=tuple(f'c{i}' for i in range(num_classes)))
    return model.eval()


def write_checkpoint(model: torch.nn.Module, path: str) -> str:
    """Save ``model``'s weights with its class names in the meta."""
    save_checkpoint(
        dict(
            meta=dict(dataset_meta=dict(model.dataset_meta)),
            state_dict=model.state_dict()), path)
    return path


def coco_photos(num: int) -> List[str]:
    """The first ``num`` coco128 photographs of the real data (where it is
    absent the test skips, see ``tests/helpers/shared_data.py``)."""
    folder = require_shared_data('coco128', 'train2017')
    paths = sorted(glob.glob(osp.join(folder, '*.jpg')))
    assert len(paths) >= num, f'{folder} has {len(paths)} photographs'
    return paths[:num]


def shapes_val_images(folder: str, num: int, size: int = 256) -> List[str]:
    """Draw the first ``num`` images of the shapes val split (seed 0, as
    the main job's data) into ``folder`` as PNGs."""
    import cv2

    from tood.datasets.shapes import image_rng, render_image
    paths = []
    for i in range(num):
        sample = render_image(image_rng(0, 'val', i), size, size)
        path = osp.join(folder, f'{i:06d}.png')
        cv2.imwrite(path, sample.image)
        paths.append(path)
    return paths


def random_images(batch: int, height: int, width: int,
                  seed: int = 0) -> np.ndarray:
    """(B, H, W, 3) uint8 noise with smooth structure, so that features
    and scores vary over the image."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (batch, height // 8 + 1, width // 8 + 1, 3))
    image = np.repeat(np.repeat(coarse, 8, 1), 8, 2)[:, :height, :width]
    noise = rng.integers(-20, 21, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def reference_detections(model: torch.nn.Module, images: np.ndarray,
                         scale_factors: Sequence[Sequence[float]],
                         ori_shapes: Sequence[Sequence[float]]
                         ) -> List[Detections]:
    """PyTorch's detections of a batch of images already resized, through
    the model's own data preprocessor and ``predict`` (``test_step``)."""
    inputs, samples = [], []
    for image, scale, ori in zip(images, scale_factors, ori_shapes):
        inputs.append(torch.from_numpy(image).permute(2, 0, 1).contiguous())
        samples.append(
            DetDataSample(
                metainfo=dict(
                    img_shape=image.shape[:2],
                    ori_shape=tuple(ori),
                    scale_factor=tuple(scale))))
    with torch.no_grad():
        results = model.test_step(dict(inputs=inputs, data_samples=samples))
    return [Detections.from_instances(r.pred_instances) for r in results]


def graph_detections(session, images: np.ndarray,
                     scale_factors: Sequence[Sequence[float]],
                     ori_shapes: Sequence[Sequence[float]],
                     test_cfg: Optional[dict] = None) -> List[Detections]:
    """Run an exported graph on a batch; with ``test_cfg`` the graph has
    no NMS and ``select_detections`` finishes the batch."""
    from tood.models.task_modules import TestCfg, select_detections
    outputs = session.run(
        None, {
            'image': images,
            'scale_factor': np.asarray(scale_factors, np.float32),
            'ori_shape': np.asarray(ori_shapes, np.float32),
        })
    if test_cfg is not None:
        scores, boxes, per_level, *factors = map(torch.from_numpy, outputs)
        outputs = [t.numpy() for t in select_detections(
            scores, boxes, per_level.tolist(),
            TestCfg.from_config(test_cfg), *factors)]
    num, boxes, scores, labels = outputs
    return [
        Detections(boxes[b, :n].astype(np.float64),
                   scores[b, :n].astype(np.float64), labels[b, :n])
        for b, n in enumerate(num.tolist())
    ]


def session(path: str):
    """An ONNX Runtime CPU session on one thread (the test machine's
    cores are shared)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        path, options, providers=['CPUExecutionProvider'])


def self_labelled_coco(model: torch.nn.Module, images: Sequence[str],
                       root: str, seed: int = 0) -> Dict[str, str]:
    """A COCO-format set whose ground truth is ``model``'s own best
    detections on ``images``, each box moved by a few pixels: an untrained
    model then scores an mAP between 0 and 1 that any change of its
    detections moves, so two runtimes can be compared by the metric.

    Returns:
        ``--cfg-options`` entries (key: value) pointing every split and
        evaluator of a COCO config at the set.
    """
    import json
    import os
    import shutil

    from tood.apis import inference_detector
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    classes = model.dataset_meta['classes']
    entries, annotations = [], []
    for image_id, path in enumerate(images):
        name = osp.basename(path)
        shutil.copy(path, osp.join(root, 'images', name))
        found = inference_detector(model, path)
        height, width = found.metainfo['ori_shape'][:2]
        entries.append(dict(id=image_id, file_name=name, height=height,
                            width=width))
        pred = found.pred_instances
        for box, label in zip(pred.bboxes[:10].tolist(),
                              pred.labels[:10].tolist()):
            x1, y1, x2, y2 = (np.array(box) + rng.normal(0, 2, 4)).tolist()
            x1, x2 = sorted((max(x1, 0), min(x2, width)))
            y1, y2 = sorted((max(y1, 0), min(y2, height)))
            annotations.append(
                dict(id=len(annotations) + 1, image_id=image_id,
                     category_id=label + 1, bbox=[x1, y1, x2 - x1, y2 - y1],
                     area=(x2 - x1) * (y2 - y1), iscrowd=0))
    ann_file = osp.join(root, 'labels.json')
    with open(ann_file, 'w') as f:
        json.dump(
            dict(images=entries, annotations=annotations,
                 categories=[dict(id=i + 1, name=name)
                             for i, name in enumerate(classes)]), f)
    options = {}
    for split in ('train', 'val', 'test'):
        loader = f'{split}_dataloader'
        options.update({
            f'{loader}.dataset.data_root': root + '/',
            f'{loader}.dataset.ann_file': 'labels.json',
            f'{loader}.dataset.data_prefix.img': 'images/',
            f'{loader}.dataset.metainfo': dict(classes=classes),
            f'{loader}.num_workers': 0,
            f'{loader}.persistent_workers': False,
        })
        if split != 'train':
            options[f'{split}_evaluator.ann_file'] = ann_file
    return options


def assert_same_detections(model, detector, images: Sequence) -> None:
    """``detector`` (an export behind the inference API) gives ``model``'s
    detections on every image, within the documented tolerances, and
    there are some to compare."""
    from tood.apis import inference_detector
    for image in images:
        ref = inference_detector(model, image)
        test = inference_detector(detector, image)
        result = compare_detections(
            Detections.from_instances(ref.pred_instances),
            Detections.from_instances(test.pred_instances))
        assert result.ok, f'{image}: {result.summary()}'
        assert len(ref.pred_instances) > 0
