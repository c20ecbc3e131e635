"""Export a TOOD detector to ONNX, pre- and post-processing included.

The exported graph is the detector's own data preprocessor, ``TOOD.network``
and the post-processing of ``tood.models`` (``dense_predictions`` and
``select_detections``), traced: nothing is written a second time for export.
Its contract (``docs/deployment.md`` has the long form):

Inputs
    ``image``        (B, H, W, 3) uint8, BGR as OpenCV loads it, already
                     resized by the config's test pipeline (H, W any size
                     with ``dynamic=True``, the exported size otherwise).
    ``scale_factor`` (B, 2) float32, (w_scale, h_scale): resized size over
                     original size, as mmcv's ``Resize`` reports it; (1, 1)
                     when the pipeline does not resize.
    ``ori_shape``    (B, 2) float32, (height, width) of the original image;
                     boxes are clipped to it.

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
    ``score_factors``    (B, N) float32, only for heads whose final score
                         is sqrt(probability · factor) (ATSS's centerness)
    ``OnnxDetector`` finishes them with ``select_detections``, the function
    the NMS graph traces.

The exporter is torch's ``dynamo=True`` one (``torch.export``): NMS is the
op ``tood::class_nms``, translated to one ONNX ``NonMaxSuppression`` node.
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

from tood.apis import default_input_shape
from tood.errors import ConfigError
from tood.models.task_modules import dense_predictions, select_detections

# Opset of the exported graph without deformable convs; ONNX has had
# GridSample (the T-Head's offset sampling) since 16 and the exporter's
# function library targets 18.
DEFAULT_OPSET = 18
# ONNX's DeformConv exists from opset 19.
DEFORM_CONV_OPSET = 19
# GridSample (eq. 6's offset sampling) exists from opset 16.
MIN_OPSET = 16
# Format tag in the model's metadata; bump on a contract change.
FORMAT = 'tood-detector/2'


class ExportError(ConfigError):
    """A model, config or option the exporter (or the runtime of an
    exported model) cannot handle correctly; the message names the module
    or option and what to do."""


# ---------------------------------------------------------------------- #
# ONNX translations of the ops the exporter has none for
# ---------------------------------------------------------------------- #
def _class_nms_onnx(boxes, scores, labels, num_classes: int,
                    iou_threshold: float, max_per_class: int):
    """``tood::class_nms`` as ONNX: each candidate scores in its own
    class's row only, so ONNX's per-class NonMaxSuppression is class-aware
    NMS; its (image, class, box) rows become the (B, C) mask."""
    from onnxscript import opset18 as op
    classes = op.Reshape(
        op.Range(op.Constant(value_int=0), op.Constant(value_int=num_classes),
                 op.Constant(value_int=1)), op.Constant(value_ints=[1, -1, 1]))
    per_class = op.Where(
        op.Equal(op.Unsqueeze(labels, op.Constant(value_ints=[1])), classes),
        op.Unsqueeze(scores, op.Constant(value_ints=[1])),
        op.Constant(value_float=0.0))  # (B, K, C)
    selected = op.NonMaxSuppression(
        boxes, per_class, op.Constant(value_ints=[max_per_class]),
        op.Constant(value_floats=[iou_threshold]),
        op.Constant(value_floats=[0.0]), center_point_box=0)  # (M, 3)
    pairs = op.Gather(selected, op.Constant(value_ints=[0, 2]), axis=1)
    ones = op.Expand(op.Constant(value_floats=[1.0]),
                     op.Shape(selected, start=0, end=1))
    mask = op.ScatterND(op.ConstantOfShape(op.Shape(scores)), pairs, ones)
    return op.Cast(mask, to=9)  # BOOL


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
    """A detector as one function of the ONNX contract (module docstring):
    uint8 image in, detections (or per-prior outputs) out.

    The detector itself is left untouched: this wraps a copy on the CPU in
    float32 with channels-first weights, so a ``channels_last`` model
    exports the same graph as its NCHW twin.

    Args:
        detector: a built TOOD (``data_preprocessor``, ``network`` and a
            ``bbox_head`` with its ``criterion``, ``strides`` and
            ``test_cfg``).
        with_nms: include the selection and NMS; without them, per-prior
            outputs.
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

    @property
    def head(self) -> nn.Module:
        return self.detector.bbox_head

    def forward(self, image: Tensor, scale_factor: Tensor,
                ori_shape: Tensor) -> Tuple[Tensor, ...]:
        """See the module docstring for the shapes."""
        inputs = self.detector.data_preprocessor(
            dict(inputs=image.permute(0, 3, 1, 2)), False)['inputs']
        cls_scores, bbox_preds, factors = self.head.criterion.predictions(
            *self.detector.network(inputs))
        scores, boxes, factors = dense_predictions(
            cls_scores, bbox_preds, self.head.strides, scale_factor,
            ori_shape, factors)
        if self.with_nms:
            level_sizes = [c.shape[-2] * c.shape[-1] for c in cls_scores]
            return tuple(select_detections(scores, boxes, level_sizes,
                                           self.head.test_cfg, factors))
        # The level sizes, so that a runtime can select per level without
        # knowing the network's stride arithmetic. Summing a map of ones
        # keeps them tensors of the input's dynamic size.
        priors_per_level = torch.stack([
            torch.ones_like(c[0, 0], dtype=torch.int64).sum()
            for c in cls_scores
        ])
        outputs = (scores, boxes, priors_per_level)
        return outputs if factors is None else outputs + (factors, )


def check_exportable(detector: nn.Module) -> None:
    """Raise ``ExportError`` for a model the exporter does not handle: it
    needs the detector's data preprocessor, ``network`` and a head whose
    training method says what inference ranks (``criterion.predictions``),
    as every head of ``tood.models`` has."""
    head = getattr(detector, 'bbox_head', None)
    needs = dict(data_preprocessor=detector, network=detector,
                 criterion=head, test_cfg=head, strides=head)
    missing = [name for name, owner in needs.items()
               if not hasattr(owner, name)]
    if not missing and not hasattr(head.criterion, 'predictions'):
        missing = ['criterion.predictions']
    if missing:
        raise ExportError(
            f'ONNX export needs a detector built by tood.models; this '
            f'{type(detector).__name__} lacks {", ".join(missing)}')


# ---------------------------------------------------------------------- #
# Export
# ---------------------------------------------------------------------- #
def _metadata(wrapper: ExportableDetector, dataset_meta: Optional[dict],
              test_pipeline: Optional[Sequence[dict]]) -> Dict[str, str]:
    """What a runtime needs besides the graph, as ONNX metadata strings:
    the contract's version, whether NMS is inside, the class count and
    names, the post-processing settings and the test pipeline."""
    meta = {
        'tood.format': FORMAT,
        'tood.with_nms': json.dumps(wrapper.with_nms),
        'tood.num_classes': json.dumps(wrapper.head.num_classes),
        'tood.test_cfg': json.dumps(wrapper.head.test_cfg.to_config()),
    }
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
        torch.ops.tood.class_nms.default: _class_nms_onnx,
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
    output_names = ['num_detections', 'boxes', 'scores', 'labels'] \
        if with_nms else ['scores', 'boxes', 'priors_per_level',
                          'score_factors'][:_num_outputs(wrapper)]
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
    for key, value in _metadata(wrapper, dataset_meta,
                                test_pipeline).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    onnx.save_model(model, out_file)
    if check:
        # By path: the checker then also handles models over 2 GB.
        onnx.checker.check_model(out_file, full_check=True)
    return out_file


def _num_outputs(wrapper: ExportableDetector) -> int:
    """How many outputs the wrapper returns (without NMS, 3 or 4 with
    score factors), from a run on a small image."""
    with torch.no_grad():
        return len(wrapper(*example_inputs((64, 64))))


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
    from tood.apis import init_detector
    detector = init_detector(config, checkpoint, 'cpu', cfg_options)
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
