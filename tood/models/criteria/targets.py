"""The step every training method of a dense head starts with: the priors
of the batch, its ground truth padded into (B, G) slots, the assignment of
priors to GTs and the targets it gives.

Shapes: B images, K classes, H×W one level, N priors of all levels.
"""
from typing import List, NamedTuple, Optional, Sequence

from torch import Tensor
from torch.profiler import record_function

from tood.errors import ConfigError, build_at
from tood.registry import TASK_UTILS
from tood.structures import DetDataSample, PaddedGT

from ..profiling import ASSIGN
from ..task_modules import AssignResult, Priors, levels_to_priors, make_priors


class Targets(NamedTuple):
    """What a batch is trained towards."""
    assign: AssignResult
    labels: Tensor  # (B, N) int64, K for background
    boxes: Tensor  # (B, N, 4) the assigned GT boxes, input pixels
    fg: Tensor  # (B, N) bool: assigned to a GT
    valid: Tensor  # (B, N) bool: on the image, not on the batch padding


def batch_priors(cls_scores: Sequence[Tensor], strides: Sequence[int],
                 anchor_scale: float,
                 data_samples: List[DetDataSample]) -> Priors:
    """The priors of the levels of (B, K, H, W) ``cls_scores``."""
    return make_priors([s.shape[-2:] for s in cls_scores], strides,
                       anchor_scale, data_samples, cls_scores[0].device)


def boxes_in_pixels(bbox_preds: Sequence[Tensor], priors: Priors) -> Tensor:
    """Per level (B, 4, H, W) boxes in stride units -> (B, N, 4) pixels."""
    return levels_to_priors(bbox_preds) * priors.strides[:, None]


def assign_targets(assigner, priors: Priors,
                   data_samples: List[DetDataSample], num_classes: int,
                   pred_scores: Optional[Tensor] = None,
                   pred_boxes: Optional[Tensor] = None) -> Targets:
    """Assign the priors of a batch to its GTs and read off the targets.

    Args:
        assigner: ``assign(priors, gt, pred_scores, pred_boxes)``; the
            predictions (detached) are (B, N, K) probabilities and (B, N,
            4) pixel boxes, which ATSS ignores.
    """
    gt = PaddedGT.from_samples(data_samples, priors.points.device)
    with record_function(ASSIGN):
        assign = assigner.assign(priors, gt, pred_scores, pred_boxes)
    labels, boxes = assign.targets(gt, num_classes)
    return Targets(assign, labels, boxes, assign.fg_mask, priors.valid)


def build_assigner(train_cfg: Optional[dict], key: str = 'assigner'):
    """The assigner ``train_cfg[key]`` describes (a bad value named by its
    key); None without a ``train_cfg``, a model that only infers."""
    if not train_cfg:
        return None
    return build_at(TASK_UTILS, train_cfg[key], f'model.train_cfg.{key}')


def check_trains(assigner) -> None:
    """Raise ``ConfigError`` for a criterion built without a
    ``train_cfg`` when it is asked for losses."""
    if assigner is None:
        raise ConfigError('the model was built without model.train_cfg: it '
                          'cannot compute losses')
