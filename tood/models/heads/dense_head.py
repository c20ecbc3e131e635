"""What every dense head of the package shares: the checks of its
arguments at build time, the run over the pyramid levels, and MMDetection's
entry points (``loss``, ``predict``), which hand the outputs to the head's
training method and to the one post-processing.

Shapes: B images, K classes, H×W one pyramid level.
"""
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor
from torch.profiler import record_function

from tood.errors import check_value
from tood.structures import DetDataSample

from ..profiling import LOSSES
from ..task_modules import TestCfg, detections_from_levels


class DenseHead(BaseModule):
    """A head that predicts on every cell of every pyramid level.

    A subclass holds its layers, defines ``forward_single(x, scale)``, its
    outputs on one level given that level's ``Scale`` (``self.scales``,
    one per stride), builds its training method as ``self.criterion``
    (``tood.models.criteria``) and names in ``classifier_name`` its layer
    of one output channel per class (fine-tuning with other classes maps
    its rows, ``tood.engine.hooks.LoadFromHook``). ``forward`` runs
    ``forward_single`` on every level; the losses are ``criterion(*outputs,
    data_samples)`` and the detections the post-processing of
    ``criterion.predictions(*outputs)``, for every head alike.

    Args:
        num_classes, in_channels, feat_channels, stacked_convs, anchor_type,
        strides, norm_cfg, test_cfg: the head's, checked here so that a bad
            value stops at build time with its config key named.
    """

    def __init__(self, num_classes: int, in_channels: int,
                 feat_channels: int, stacked_convs: int, anchor_type: str,
                 strides: Sequence[int], norm_cfg: Optional[dict],
                 test_cfg: Optional[dict], init_cfg: Optional[dict]) -> None:
        super().__init__(init_cfg=init_cfg)
        for key, value in dict(num_classes=num_classes,
                               in_channels=in_channels,
                               feat_channels=feat_channels,
                               stacked_convs=stacked_convs).items():
            check_value(isinstance(value, int) and value >= 1,
                        f'model.bbox_head.{key}', 'a positive integer', value)
        check_value(anchor_type in ('anchor_free', 'anchor_based'),
                    'model.bbox_head.anchor_type', "'anchor_free' or "
                    "'anchor_based'", anchor_type)
        check_value(len(strides) >= 1 and all(s > 0 for s in strides),
                    'model.bbox_head.strides', 'one positive stride per level',
                    strides)
        if norm_cfg and norm_cfg.get('type') == 'GN':
            groups = norm_cfg.get('num_groups', 1)
            check_value(feat_channels % groups == 0,
                        'model.bbox_head.norm_cfg.num_groups',
                        f'a divisor of feat_channels ({feat_channels})',
                        groups)
        self.num_classes, self.anchor_type = num_classes, anchor_type
        self.strides = tuple(strides)
        self.test_cfg = TestCfg.from_config(test_cfg)

    def forward(self, feats: Sequence[Tensor]) -> Tuple[List[Tensor], ...]:
        """Run ``forward_single(x, scale)`` on every pyramid level.

        Args:
            feats: per level (B, C_in, H, W), one level per stride.
        Returns:
            Each output of ``forward_single`` as a list over the levels.
        """
        # One feature map per stride: zip would silently drop extra ones.
        if len(feats) != len(self.strides):
            raise ValueError(
                f'The head got {len(feats)} feature maps for '
                f'{len(self.strides)} strides {self.strides}: '
                'model.bbox_head.strides needs one stride per output of the '
                'neck (model.neck.num_outs).')
        outputs = map(self.forward_single, feats, self.scales)
        return tuple(map(list, zip(*outputs)))  # per level -> per output

    def loss(self, feats: Sequence[Tensor],
             data_samples: List[DetDataSample]) -> Dict[str, Tensor]:
        return self.loss_by_feat(*self(feats), data_samples)

    def predict(self, feats: Sequence[Tensor],
                data_samples: List[DetDataSample],
                rescale: bool = True) -> List[InstanceData]:
        return self.predict_by_feat(
            *self(feats), [s.metainfo for s in data_samples], rescale=rescale)

    def loss_by_feat(self, *outputs_and_samples) -> Dict[str, Tensor]:
        """The losses of the head's per-level outputs (as ``forward``
        returns them) followed by the batch's data samples."""
        with record_function(LOSSES):
            return self.criterion(*outputs_and_samples)

    def predict_by_feat(self, *outputs_and_metas,
                        rescale: bool = True) -> List[InstanceData]:
        """The detections of the head's per-level outputs followed by the
        images' metainfo (``scale_factor``, ``ori_shape``, ``img_shape``),
        in original-image pixels with ``rescale``."""
        *outputs, batch_img_metas = outputs_and_metas
        cls_scores, bbox_preds, factors = self.criterion.predictions(
            *outputs)
        return detections_from_levels(cls_scores, bbox_preds, self.strides,
                                      batch_img_metas, self.test_cfg, rescale,
                                      factors)
