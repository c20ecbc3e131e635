"""The TOOD detector: backbone -> FPN -> T-Head."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModel
from torch import Tensor
from torch.profiler import record_function

from tood.errors import ConfigError, check_value
from tood.registry import MODELS
from tood.structures import DetDataSample

from ..profiling import NETWORK
from ..task_modules import attach_alignment


@MODELS.register_module()
class TOOD(BaseModel):
    """One-stage detector of Feng et al., "TOOD: Task-aligned One-stage
    Object Detection" (ICCV 2021).

    ``forward`` follows mmengine's three modes: ``'loss'`` returns a dict of
    losses, ``'predict'`` returns the data samples with ``pred_instances`` in
    original-image pixels, ``'tensor'`` returns the head's raw per-level
    outputs.

    ``frozen_parts`` names the parts that keep their weights while the rest
    trains, for fine-tuning on little data: ``('backbone',)``,
    ``('backbone', 'neck')`` (everything but the head). Their parameters
    get no gradient and their norm layers stay in eval mode. (Freezing
    only the first stages of a ResNet is the backbone's own
    ``frozen_stages``.)

    ``channels_last=True`` keeps the backbone's and neck's weights and
    feature maps in channels-last (NHWC) memory order; the head gets NCHW
    maps. Shapes and results are unchanged. On the CPU, oneDNN convolutions
    run faster in NHWC, while GroupNorm (in the head) runs slower, hence the
    split; the README's Benchmarks section has the measured step times.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 bbox_head: dict,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[Union[dict,
                                                   torch.nn.Module]] = None,
                 channels_last: bool = False,
                 frozen_parts: Sequence[str] = (),
                 init_cfg: Optional[dict] = None):
        # Built here rather than by BaseModel so that it resolves in the tood
        # scope even when no default scope is set (scripts, tests).
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck)
        self.bbox_head = MODELS.build(
            dict(bbox_head, train_cfg=train_cfg, test_cfg=test_cfg))
        # A zip over levels would silently drop the extra ones.
        num_outs = getattr(self.neck, 'num_outs', None)
        strides = self.bbox_head.strides
        if num_outs is not None and num_outs != len(strides):
            raise ConfigError(
                f'model.bbox_head.strides {tuple(strides)} has '
                f'{len(strides)} strides for the {num_outs} outputs of the '
                'neck (model.neck.num_outs): give one stride per level.')
        # Weights are converted here, before a runner moves the model or
        # wraps it in DDP; later initialisation and checkpoint loading copy
        # into them in place and keep the order.
        self.channels_last = channels_last
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
            self.neck.to(memory_format=torch.channels_last)
        check_value(set(frozen_parts) <= {'backbone', 'neck'},
                    'model.frozen_parts', "parts among 'backbone' and 'neck'",
                    frozen_parts)
        self.frozen_parts = tuple(frozen_parts)
        # Set by tood.engine.hooks.AlignmentHook while it validates: the
        # data samples then also get the alignment of their ground truth.
        self.measure_alignment = False
        for part in self.frozen_parts:
            getattr(self, part).requires_grad_(False)

    def train(self, mode: bool = True) -> 'TOOD':
        """As ``nn.Module.train``, with the frozen parts in eval mode (their
        norm layers keep their statistics)."""
        super().train(mode)
        for part in self.frozen_parts:
            getattr(self, part).eval()
        return self

    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """(B, 3, H, W) -> FPN levels, each (B, C, H / s, W / s)."""
        if not self.channels_last:
            return self.neck(self.backbone(inputs))
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        return tuple(f.contiguous() for f in self.neck(self.backbone(inputs)))

    def network(self, inputs: Tensor) -> Tuple[List[Tensor], ...]:
        """(B, 3, H, W) -> the head's per-level outputs: backbone, neck and
        head, the dense part of every mode.

        Every mode goes through this one method, so that
        ``tood.engine.compile_network`` can compile it as one graph whose
        only input is the image batch; label assignment, losses and
        post-processing, whose shapes depend on the data, stay eager.
        """
        return self.bbox_head(self.extract_feat(inputs))

    def forward(self,
                inputs: Tensor,
                data_samples: Optional[List[DetDataSample]] = None,
                mode: str = 'tensor'):
        if mode not in ('loss', 'predict', 'tensor'):
            raise ValueError(
                f'Invalid mode "{mode}": use loss, predict or tensor')
        with record_function(NETWORK):
            outputs = self.network(inputs)
        if mode == 'loss':
            return self.bbox_head.loss_by_feat(*outputs, data_samples)
        if mode == 'tensor':
            return outputs
        results = self.bbox_head.predict_by_feat(
            *outputs, [s.metainfo for s in data_samples], rescale=True)
        for sample, pred in zip(data_samples, results):
            sample.pred_instances = pred
        if self.measure_alignment:
            attach_alignment(self.bbox_head, outputs, data_samples)
        return data_samples
