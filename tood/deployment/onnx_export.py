"""Export a TOOD detector to ONNX, pre- and post-processing included.

The exported graph's contract (``docs/deployment.md`` has the long form):

Inputs
    ``image``        (B, H, W, 3) uint8, BGR as OpenCV loads it, already
                     resized by the config's test pipeline (H, W any size
                     with ``dynamic=True``, the exported size otherwise).
    ``scale_factor`` (B, 2) float32, (w_scale, h_scale): resized size over
                     original size, as mmcv's ``Resize`` reports it; (1, 1)
                     when the pipeline does not resize.
    ``ori_shape``    (B, 2) float32, (height, width) of the original image;
                     boxes are clipped to it.

The graph casts to float, flips BGR to RGB, normalises with the data
preprocessor's mean and std and pads right and bottom to the size divisor,
exactly as ``DetDataPreprocessor`` does for one image.

Outputs with NMS (``with_nms=True``), D = ``test_cfg.max_per_img``
    ``num_detections`` (B,) int64
    ``boxes``          (B, D, 4) float32, x1 y1 x2 y2 in original-image
                       pixels
    ``scores``         (B, D) float32, best first
    ``labels``         (B, D) int64
    Rows past ``num_detections`` are padding: boxes 0, scores 0, labels -1.

Outputs without NMS, N priors of all levels (level after level, row-major)
    ``scores``           (B, N, K) float32 class probabilities
    ``boxes``            (B, N, 4) float32, original-image pixels, clipped
    ``priors_per_level`` (L,) int64, how many of the N priors each level has
    ``tood.deployment.postprocess_numpy`` turns them into the detections the
    NMS graph gives.

The exporter is torch's ``dynamo=True`` one (``torch.export``): NMS is a
custom op (``tood_export::class_nms``) translated to one ONNX
``NonMaxSuppression`` node, its data-dependent output size is an unbacked
symbol rather than a traced constant, and the TorchScript exporter is
deprecated in torch 2.9+.
"""
import copy
import json
import os
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from tood.errors import ConfigError

# Opset of the exported graph without deformable convs; ONNX has had
# GridSample (the T-Head's offset sampling) since 16 and the exporter's
# function library targets 18.
DEFAULT_OPSET = 18
# ONNX's DeformConv exists from opset 19.
DEFORM_CONV_OPSET = 19
# GridSample (eq. 6's offset sampling) exists from opset 16.
MIN_OPSET = 16
# Format tag in the model's metadata; bump on a contract change.
FORMAT = 'tood-detector/1'
SUPPORTED_HEADS = ('TOODHead', 'ParallelHead')


class ExportError(ConfigError):
    """A model, config or option the exporter (or the runtime of an
    exported model) cannot handle correctly; the message names the module
    or option and what to do."""


# ---------------------------------------------------------------------- #
# Class-aware NMS as a custom op with ONNX NonMaxSuppression semantics
# ---------------------------------------------------------------------- #
@torch.library.custom_op('tood_export::class_nms', mutates_args=())
def class_nms(boxes: Tensor, scores: Tensor, max_per_class: int,
              iou_threshold: float, score_threshold: float) -> Tensor:
    """ONNX ``NonMaxSuppression`` in PyTorch, for eager runs of the export
    wrapper; the ONNX graph gets the real operator.

    Per image and class: boxes scoring above ``score_threshold``, greedy
    NMS (suppressed when IoU > ``iou_threshold``), at most
    ``max_per_class`` kept, best first.

    Args:
        boxes: (B, N, 4) x1 y1 x2 y2.
        scores: (B, K, N).
    Returns:
        (M, 3) int64 rows (image, class, box index).
    """
    from torchvision.ops import nms
    rows = []
    for b in range(scores.size(0)):
        for k in range(scores.size(1)):
            keep = (scores[b, k] > score_threshold).nonzero().squeeze(1)
            order = nms(boxes[b, keep], scores[b, k, keep],
                        iou_threshold)[:max_per_class]
            kept = keep[order]
            rows.append(
                torch.stack(
                    [torch.full_like(kept, b),
                     torch.full_like(kept, k), kept], 1))
    if not rows:
        return boxes.new_zeros((0, 3), dtype=torch.int64)
    return torch.cat(rows)


@class_nms.register_fake
def _class_nms_fake(boxes: Tensor, scores: Tensor, max_per_class: int,
                    iou_threshold: float, score_threshold: float) -> Tensor:
    # How many boxes survive depends on the data: an unbacked size.
    num = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((num, 3), dtype=torch.int64)


def _class_nms_onnx(boxes, scores, max_per_class: int, iou_threshold: float,
                    score_threshold: float):
    """onnxscript translation of ``class_nms``: one NonMaxSuppression."""
    from onnxscript import opset18 as op
    return op.NonMaxSuppression(
        boxes,
        scores,
        op.Constant(value_ints=[max_per_class]),
        op.Constant(value_floats=[iou_threshold]),
        op.Constant(value_floats=[score_threshold]),
        center_point_box=0)


def _deform_conv2d_onnx(input, weight, offset, mask, bias, stride_h: int,
                        stride_w: int, pad_h: int, pad_w: int, dil_h: int,
                        dil_w: int, n_weight_grps: int, n_offset_grps: int,
                        use_mask: bool):
    """onnxscript translation of ``torchvision::deform_conv2d`` (DCNv2 in
    ``tood.models.layers``) to ONNX DeformConv (opset 19). Both take the
    offsets as (dy, dx) pairs per kernel tap and offset group; the tests
    compare the two numerically."""
    from onnxscript import opset19 as op
    attrs = dict(
        dilations=[dil_h, dil_w],
        group=n_weight_grps,
        offset_group=n_offset_grps,
        pads=[pad_h, pad_w, pad_h, pad_w],
        strides=[stride_h, stride_w])
    if use_mask:
        return op.DeformConv(input, weight, offset, bias, mask, **attrs)
    return op.DeformConv(input, weight, offset, bias, **attrs)


def deformable_modules(model: nn.Module) -> List[str]:
    """Names of the modules that run a deformable convolution."""
    from tood.models.layers import ModulatedDeformConv2d
    return [
        name for name, module in model.named_modules()
        if isinstance(module, ModulatedDeformConv2d)
    ]


# ---------------------------------------------------------------------- #
# The exported module
# ---------------------------------------------------------------------- #
class ExportableDetector(nn.Module):
    """A TOOD detector as one function of the ONNX contract (module
    docstring): uint8 image in, detections (or per-prior outputs) out.

    The detector itself is left untouched: this wraps a copy on the CPU in
    float32 with channels-first weights, so a ``channels_last`` model
    exports the same graph as its NCHW twin.

    Args:
        detector: a built TOOD (``extract_feat``, ``bbox_head`` with
            ``strides``, ``num_classes`` and ``test_cfg``,
            ``data_preprocessor``).
        with_nms: include the post-processing (thresholds, NMS, top
            ``max_per_img``); without it, per-prior outputs.
    """

    def __init__(self, detector: nn.Module, with_nms: bool = True):
        super().__init__()
        check_exportable(detector)
        # Traced on the CPU in float32, whatever the detector was trained
        # or loaded as; the graph runs on any ONNX Runtime provider.
        detector = copy.deepcopy(detector).cpu().float().eval()
        detector.to(memory_format=torch.contiguous_format)
        if getattr(detector, 'channels_last', False):
            # Memory order is not part of an ONNX graph; skip the
            # contiguous() round trips of the channels-last path.
            detector.channels_last = False
        self.detector = detector
        self.with_nms = with_nms

        pre = detector.data_preprocessor
        self.bgr_to_rgb = bool(getattr(pre, '_channel_conversion', False))
        self.normalize = bool(getattr(pre, '_enable_normalize', False))
        if self.normalize:
            # (3, 1, 1) float32, the preprocessor's own tensors.
            self.register_buffer('mean', pre.mean.detach().clone().float())
            self.register_buffer('std', pre.std.detach().clone().float())
        self.size_divisor = int(getattr(pre, 'pad_size_divisor', 1))
        self.pad_value = float(getattr(pre, 'pad_value', 0))

        head = detector.bbox_head
        self.num_classes = int(head.num_classes)
        self.strides = tuple(int(s) for s in head.strides)
        cfg = head.test_cfg or {}
        # Defaults as in predict_by_levels.
        self.score_thr = float(cfg.get('score_thr', 0.05))
        self.nms_pre = int(cfg.get('nms_pre', 1000))
        self.iou_thr = float(cfg.get('nms', {}).get('iou_threshold', 0.6))
        self.max_per_img = int(cfg.get('max_per_img', 100))
        if self.nms_pre < 1 or self.max_per_img < 1:
            raise ExportError(
                'model.test_cfg.nms_pre and max_per_img must be positive to '
                f'export, got {self.nms_pre} and {self.max_per_img}')

    @property
    def test_cfg(self) -> dict:
        """The post-processing settings baked into the graph."""
        return dict(
            score_thr=self.score_thr,
            nms_pre=self.nms_pre,
            nms=dict(iou_threshold=self.iou_thr),
            max_per_img=self.max_per_img)

    def preprocess(self, image: Tensor) -> Tensor:
        """(B, H, W, 3) uint8 BGR -> (B, 3, H', W') float32 normalised,
        padded right and bottom to multiples of the size divisor."""
        x = image.permute(0, 3, 1, 2)
        if self.bgr_to_rgb:
            x = x.flip(1)
        # Cast after the channel flip, as mmengine's preprocessor does; the
        # arithmetic below is then the same float32 ops in the same order.
        x = x.float()
        if self.normalize:
            x = (x - self.mean) / self.std
        d = self.size_divisor
        if d > 1:
            pad_h = (d - x.shape[2] % d) % d
            pad_w = (d - x.shape[3] % d) % d
            x = nn.functional.pad(x, (0, pad_w, 0, pad_h),
                                  value=self.pad_value)
        return x

    def head_outputs(self, image: Tensor) -> Tuple[List[Tensor], List[Tensor]]:
        """The head's per-level (B, K, h, w) probabilities and (B, 4, h, w)
        boxes in stride units."""
        feats = self.detector.extract_feat(self.preprocess(image))
        cls_scores, bbox_preds = self.detector.bbox_head(feats)
        return list(cls_scores), list(bbox_preds)

    def _to_original(self, boxes: Tensor, scale_factor: Tensor,
                     ori_shape: Tensor) -> Tensor:
        """(B, M, 4) input pixels -> original pixels, clipped to the
        original image, with the float32 ops of predict_by_levels."""
        scale = torch.cat([scale_factor, scale_factor], 1).float()
        boxes = boxes / scale[:, None, :]
        hw = ori_shape.float()
        limits = torch.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], 1)
        return torch.minimum(boxes.clamp(min=0), limits[:, None, :])

    def forward(self, image: Tensor, scale_factor: Tensor,
                ori_shape: Tensor) -> Tuple[Tensor, ...]:
        """See the module docstring for the shapes."""
        cls_scores, bbox_preds = self.head_outputs(image)
        if not self.with_nms:
            return self._per_prior(cls_scores, bbox_preds, scale_factor,
                                   ori_shape)
        return self._detections(cls_scores, bbox_preds, scale_factor,
                                ori_shape)

    def _per_prior(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                   scale_factor: Tensor,
                   ori_shape: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        B = cls_scores[0].shape[0]
        K = self.num_classes
        scores = torch.cat(
            [c.permute(0, 2, 3, 1).reshape(B, -1, K) for c in cls_scores], 1)
        boxes = torch.cat([
            b.permute(0, 2, 3, 1).reshape(B, -1, 4) * s
            for b, s in zip(bbox_preds, self.strides)
        ], 1)
        boxes = self._to_original(boxes, scale_factor, ori_shape)
        # The level sizes, so that a post-processor can apply nms_pre per
        # level without knowing the network's stride arithmetic. Summing a
        # row of ones keeps them tensors of the input's dynamic size.
        priors_per_level = torch.stack([
            torch.ones_like(c[0, 0], dtype=torch.int64).sum()
            for c in cls_scores
        ])
        return scores, boxes, priors_per_level

    def _detections(
            self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
            scale_factor: Tensor,
            ori_shape: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        B = cls_scores[0].shape[0]
        K = self.num_classes
        k = self.nms_pre
        neg_inf = float('-inf')
        cand_scores, cand_boxes, cand_labels = [], [], []
        for cls, box, stride in zip(cls_scores, bbox_preds, self.strides):
            # (B, h·w·K), prior-major as in predict_by_levels.
            flat = cls.permute(0, 2, 3, 1).reshape(B, -1)
            # The best nms_pre (prior, class) pairs of the level; those at
            # or below score_thr are dropped by the NMS node's threshold,
            # which is the same set as "above score_thr, then the best
            # nms_pre". Padding with -inf keeps k a constant on levels
            # with fewer than nms_pre pairs.
            flat = torch.cat([flat, flat.new_full((B, k), neg_inf)], 1)
            top, index = flat.topk(k, dim=1)
            prior = torch.div(index, K, rounding_mode='floor')
            per_prior = box.permute(0, 2, 3, 1).reshape(B, -1, 4)
            # Zero rows for the padding entries' prior indices.
            per_prior = torch.cat(
                [per_prior, per_prior.new_zeros((B, k // K + 2, 4))], 1)
            picked = per_prior.gather(1, prior[..., None].expand(-1, -1, 4))
            cand_scores.append(top)
            cand_boxes.append(picked * stride)
            cand_labels.append(index % K)
        scores = torch.cat(cand_scores, 1)  # (B, C)
        boxes = self._to_original(
            torch.cat(cand_boxes, 1), scale_factor, ori_shape)  # (B, C, 4)
        labels = torch.cat(cand_labels, 1)  # (B, C)
        num_cand = scores.shape[1]

        # Class-aware NMS: each candidate scores only in its own class row,
        # so ONNX's per-class NMS is exactly batched_nms. A class cannot
        # contribute more than max_per_img to the final best max_per_img.
        classes = torch.arange(K, device=labels.device)
        per_class = torch.where(labels[:, None, :] == classes[None, :, None],
                                scores[:, None, :],
                                scores.new_full((), neg_inf))
        selected = class_nms(boxes, per_class, self.max_per_img,
                             self.iou_thr, self.score_thr)
        img, cand = selected[:, 0], selected[:, 2]
        kept = torch.full_like(scores, neg_inf).index_put(
            (img, cand), scores[img, cand])

        # The best max_per_img survivors per image, best first; padding
        # makes k a constant however few candidates there are.
        D = self.max_per_img
        kept = torch.cat([kept, kept.new_full((B, D), neg_inf)], 1)
        top, index = kept.topk(D, dim=1)
        valid = top > neg_inf
        index = index.clamp(max=num_cand - 1)
        out_boxes = boxes.gather(1, index[..., None].expand(-1, -1, 4))
        out_boxes = torch.where(valid[..., None], out_boxes,
                                out_boxes.new_zeros(()))
        out_scores = torch.where(valid, top, top.new_zeros(()))
        out_labels = torch.where(valid, labels.gather(1, index),
                                 labels.new_full((), -1))
        return valid.sum(1), out_boxes, out_scores, out_labels


def check_exportable(detector: nn.Module) -> None:
    """Raise ``ExportError`` for a model the exporter does not handle."""
    head = getattr(detector, 'bbox_head', None)
    name = type(head).__name__
    if name not in SUPPORTED_HEADS:
        raise ExportError(
            f'ONNX export supports the heads {", ".join(SUPPORTED_HEADS)} '
            f'(class probabilities and stride-unit boxes); this model has '
            f'{name}, whose post-processing differs')
    if not hasattr(detector, 'extract_feat') or not hasattr(
            detector, 'data_preprocessor'):
        raise ExportError('ONNX export needs a TOOD detector with '
                          'extract_feat and a data_preprocessor')


# ---------------------------------------------------------------------- #
# Export
# ---------------------------------------------------------------------- #
def _metadata(wrapper: ExportableDetector, dataset_meta: Optional[dict],
              test_pipeline: Optional[Sequence[dict]],
              dynamic: bool) -> Dict[str, str]:
    """What a runtime needs besides the graph, as ONNX metadata strings."""
    meta = {
        'tood.format': FORMAT,
        'tood.with_nms': json.dumps(wrapper.with_nms),
        'tood.dynamic': json.dumps(dynamic),
        'tood.num_classes': json.dumps(wrapper.num_classes),
        'tood.strides': json.dumps(list(wrapper.strides)),
        'tood.test_cfg': json.dumps(wrapper.test_cfg),
        'tood.size_divisor': json.dumps(wrapper.size_divisor),
        'tood.bgr_to_rgb': json.dumps(wrapper.bgr_to_rgb),
    }
    if wrapper.normalize:
        meta['tood.mean'] = json.dumps(wrapper.mean.flatten().tolist())
        meta['tood.std'] = json.dumps(wrapper.std.flatten().tolist())
    if dataset_meta:
        meta['tood.classes'] = json.dumps(
            list(dataset_meta.get('classes') or ()))
        if dataset_meta.get('palette'):
            meta['tood.palette'] = json.dumps(
                [list(c) for c in dataset_meta['palette']])
    if test_pipeline:
        meta['tood.test_pipeline'] = json.dumps(
            _jsonable(list(test_pipeline)))
    return meta


def _jsonable(value):
    """Config values as JSON: transform types given as classes become
    their registered names."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, type):
        return value.__name__
    return value


def custom_translations() -> dict:
    """The exporter's translations of the ops it has none for: our NMS op
    and torchvision's deformable convolution."""
    import torchvision  # noqa: F401  (registers torchvision::deform_conv2d)
    return {
        torch.ops.tood_export.class_nms.default: _class_nms_onnx,
        torch.ops.torchvision.deform_conv2d.default: _deform_conv2d_onnx,
    }


def resolve_opset(detector: nn.Module, opset: Optional[int]) -> int:
    """The opset to export at: 18, or 19 when the model has deformable
    convolutions (ONNX DeformConv).

    Raises:
        ExportError: ``opset`` below 16 (ONNX GridSample, which the
            T-Head's offset sampling of eq. 6 and the NMS wrapper's
            indexing need), or below 19 with deformable convolutions; the
            message names the deformable modules.
    """
    if opset is not None and opset < MIN_OPSET:
        raise ExportError(
            f'--opset {opset} is too old: the exported graph needs opset '
            f'{MIN_OPSET} or later (GridSample, the T-Head\'s offset '
            'sampling of eq. 6)')
    dcn = deformable_modules(detector)
    if not dcn:
        return DEFAULT_OPSET if opset is None else opset
    if opset is None:
        return DEFORM_CONV_OPSET
    if opset < DEFORM_CONV_OPSET:
        listed = ', '.join(dcn[:4]) + (f' and {len(dcn) - 4} more'
                                       if len(dcn) > 4 else '')
        raise ExportError(
            f'the model has deformable convolutions ({listed}); ONNX has '
            f'them as DeformConv from opset {DEFORM_CONV_OPSET}, so '
            f'--opset {opset} cannot express them: export with --opset '
            f'{DEFORM_CONV_OPSET} or higher')
    return opset


def example_inputs(shape: Tuple[int, int],
                   batch: int = 1) -> Tuple[Tensor, Tensor, Tensor]:
    """Inputs of the contract for a (H, W) image, for tracing."""
    h, w = shape
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (batch, h, w, 3), dtype=torch.uint8,
                          generator=g)
    scale_factor = torch.ones(batch, 2)
    ori_shape = torch.tensor([[float(h), float(w)]]).expand(batch, 2)
    return image, scale_factor, ori_shape.contiguous()


def export_onnx(detector: nn.Module,
                out_file: str,
                shape: Tuple[int, int] = (800, 1333),
                dynamic: bool = False,
                with_nms: bool = True,
                opset: Optional[int] = None,
                dataset_meta: Optional[dict] = None,
                test_pipeline: Optional[Sequence[dict]] = None,
                check: bool = True,
                verbose: bool = False) -> str:
    """Export ``detector`` to ``out_file`` under the module's contract.

    Args:
        detector: a built TOOD (weights loaded).
        out_file: the ``.onnx`` file to write (weights inside it).
        shape: (H, W) of the exported input; with ``dynamic`` only the
            size traced, any size runs.
        dynamic: batch size, height and width free.
        with_nms: detections out (else per-prior outputs).
        opset: ONNX opset; None picks 18, or 19 with deformable convs.
        dataset_meta: ``classes`` (and ``palette``) stored in the metadata.
        test_pipeline: the config's test pipeline, stored in the metadata
            so that ``OnnxDetector`` needs no config.
        check: run ``onnx.checker`` (full check, with shape inference).
        verbose: show the exporter's progress.
    Returns:
        ``out_file``.
    Raises:
        ExportError: an unsupported head, an opset below 16, or
            deformable convolutions at an opset below 19.
    """
    import onnx
    opset = resolve_opset(detector, opset)
    wrapper = ExportableDetector(detector, with_nms).eval()
    if dynamic:
        # torch.export specialises sizes of 0 and 1, so the traced batch
        # has two images. Dim.DYNAMIC rather than named Dims with ranges:
        # the solver cannot prove guards such as "a level is not 1x1"
        # through the padding's modulo and would refuse; sizes where they
        # fail are checked against PyTorch in the tests.
        inputs = example_inputs(shape, batch=2)
        free = torch.export.Dim.DYNAMIC
        dynamic_shapes = {
            'image': {0: free, 1: free, 2: free},
            'scale_factor': {0: free},
            'ori_shape': {0: free},
        }
    else:
        inputs = example_inputs(shape, batch=1)
        dynamic_shapes = None
    output_names = (['num_detections', 'boxes', 'scores', 'labels']
                    if with_nms else ['scores', 'boxes', 'priors_per_level'])
    translations = custom_translations()
    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter('ignore')
        with torch.no_grad():
            program = torch.onnx.export(
                wrapper,
                inputs,
                dynamo=True,
                opset_version=opset,
                input_names=['image', 'scale_factor', 'ori_shape'],
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                custom_translation_table=translations,
                verbose=verbose,
                report=False)
    model = program.model_proto
    if dynamic:
        _name_dynamic_dims(model)
    for key, value in _metadata(wrapper, dataset_meta, test_pipeline,
                                dynamic).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    onnx.save_model(model, out_file)
    if check:
        # By path: the checker then also handles models over 2 GB.
        onnx.checker.check_model(out_file, full_check=True)
    return out_file


def _name_dynamic_dims(model) -> None:
    """Call the image's free dimensions batch, height and width wherever
    the exporter's symbols for them appear (inputs, outputs, value infos),
    for readers of the graph such as Netron or ONNX Runtime's get_inputs."""
    graph = model.graph
    image = next(i for i in graph.input if i.name == 'image')
    names = {}
    for dim, name in zip(image.type.tensor_type.shape.dim,
                         ('batch', 'height', 'width')):
        if dim.dim_param:
            names[dim.dim_param] = name
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


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


def build_detector(config, checkpoint: Optional[str], cfg_options=None):
    """``tood.apis.init_detector`` on the CPU; without a checkpoint the
    weights are initialised from seed 0, so that an export and a later
    verification of an untrained model see the same weights."""
    import torch
    from tood.apis import init_detector
    if checkpoint is not None:
        return init_detector(config, checkpoint, 'cpu', cfg_options)
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        model = init_detector(config, None, 'cpu', cfg_options)
        model.init_weights()
    finally:
        torch.random.set_rng_state(state)
    return model.eval()


def export_config(config: Union[str, 'object'],
                  checkpoint: Optional[str],
                  out_file: str,
                  shape: Optional[Tuple[int, int]] = None,
                  dynamic: bool = False,
                  with_nms: bool = True,
                  opset: Optional[int] = None,
                  cfg_options: Optional[dict] = None,
                  verbose: bool = False) -> str:
    """Build a config's detector, load ``checkpoint`` and export it, with
    the class names and the test pipeline in the metadata.

    Args:
        config: a config file or a loaded ``Config``.
        checkpoint: weights; None exports the model initialised from
            seed 0 (to check that a config exports).
        shape: (H, W); None takes ``default_input_shape(cfg)``.
        Others: as ``export_onnx``.
    Returns:
        ``out_file``.
    """
    detector = build_detector(config, checkpoint, cfg_options)
    cfg = detector.cfg
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    pipeline = dataset.get('pipeline') or cfg.get('test_pipeline')
    pipeline = [
        t for t in pipeline or []
        if (t['type'] if isinstance(t['type'], str) else
            t['type'].__name__) != 'LoadAnnotations'
    ]
    shape = shape or default_input_shape(cfg)
    if shape is None:
        if not dynamic:
            raise ExportError(
                'the input size is unknown (no Resize in the test pipeline '
                'and no fixed image size): pass --shape H W, or --dynamic')
        # Only traced at: a size whose coarsest level is wider than 1x1.
        shape = (320, 320)
    return export_onnx(
        detector,
        out_file,
        shape=shape,
        dynamic=dynamic,
        with_nms=with_nms,
        opset=opset,
        dataset_meta=detector.dataset_meta,
        test_pipeline=pipeline,
        verbose=verbose)

