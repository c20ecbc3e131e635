"""Task-aligned Learning (Sec. 3.2 of the TOOD paper): assignment, targets
and losses of a dense head, with the ATSS warm-up that comes first.

A head that predicts class probabilities and boxes on the prior grid holds
one ``TaskAlignedCriterion`` and hands it its per-level outputs. The T-Head
and the parallel head of the paper's head comparison both train this way,
so comparing them changes the head and nothing else. Their outputs are the
scores and boxes inference ranks (``predictions``).

Shapes: B images, N priors of all levels, K classes, P positives.
"""
from logging import INFO, WARNING
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.dist import all_reduce
from mmengine.logging import MessageHub, print_log
from torch import Tensor, nn

from tood.errors import build_at, check_value
from tood.registry import MODELS, TASK_UTILS
from tood.structures import DetDataSample, centerness

from ..losses import global_normaliser
from ..task_modules import levels_to_priors
from .targets import (Targets, assign_targets, batch_priors,
                      boxes_in_pixels, check_trains)


class TaskAlignedCriterion(nn.Module):
    """Losses of a batch, after the ATSS warm-up with TAL (eq. 9-11).

    Warm-up: ATSS on the anchors, focal loss with hard labels normalised by
    the number of positives, GIoU weighted by the centerness target. Then
    TAL: quality focal loss towards t-hat (eq. 11) and GIoU weighted by
    t-hat, both normalised by the sum of t-hat. Every normaliser is averaged
    over processes and clamped to at least 1.

    The warm-up lasts ``initial_epoch`` epochs, or ``initial_iter``
    iterations when that is set: an iteration-based loop has no epochs
    (mmengine counts it as one), so it needs ``initial_iter``, which
    ``tools/train.py`` checks before it starts. The progress is read from
    mmengine's ``MessageHub``, which a runner's train loop keeps up to date
    (also after ``--resume`` and in every process), so no hook has to be
    listed.

    Args:
        num_classes: K.
        strides: strides of the pyramid levels.
        anchor_scale: side of the ATSS anchors, in strides.
        train_cfg: None for a model that only infers; else
            ``initial_epoch`` (4), ``initial_iter`` (None),
            ``initial_assigner``, ``assigner`` (built with ``alpha`` and
            ``beta`` of eq. 9) and ``hard_labels`` (the paper's ablation:
            TAL picks the positives, but they are trained towards 1 with
            box weight 1, normalised by the number of positives).
        initial_loss_cls, loss_cls, loss_bbox: the warm-up's
            classification loss (focal loss), TAL's (quality focal loss,
            eq. 11) and the box loss (GIoU, weight 2); all take
            probabilities.
    """

    def __init__(self, num_classes: int, strides: Sequence[int],
                 anchor_scale: float, train_cfg: Optional[dict],
                 initial_loss_cls: Optional[dict] = None,
                 loss_cls: Optional[dict] = None,
                 loss_bbox: Optional[dict] = None) -> None:
        super().__init__()
        self.num_classes, self.strides = num_classes, tuple(strides)
        self.anchor_scale = anchor_scale
        self.initial_loss_cls = MODELS.build(initial_loss_cls or dict(
            type='FocalLoss', activated=True, gamma=2.0, alpha=0.25))
        self.loss_cls = MODELS.build(loss_cls or dict(
            type='QualityFocalLoss', activated=True, beta=2.0))
        self.loss_bbox = MODELS.build(
            loss_bbox or dict(type='GIoULoss', loss_weight=2.0))
        self.trains = bool(train_cfg)
        # TAL's assignment since tal_statistics() last read it: GTs, GTs
        # with a positive, positives, sum of t-hat. A plain attribute, not
        # a buffer: not saved, not averaged by an EMA, not broadcast.
        self._tal_totals: Optional[Tensor] = None
        if not train_cfg:
            return
        for key, default in (('initial_epoch', 4), ('initial_iter', None)):
            value = train_cfg.get(key, default)
            check_value(value is None or isinstance(value, int) and value >= 0,
                        f'model.train_cfg.{key}', 'a whole number >= 0', value)
            setattr(self, key, value)
        self.hard_labels = train_cfg.get('hard_labels', False)
        # alpha and beta of eq. (9) sit in train_cfg, as in MMDetection's
        # configs; the task-aligned assigner gets them when it is built.
        assigner = dict(train_cfg['assigner'])
        for key, default in (('alpha', 1), ('beta', 6)):
            value = train_cfg.get(key, default)
            check_value(assigner.setdefault(key, value) == value,
                        f'model.train_cfg.assigner.{key}',
                        f'left out (model.train_cfg.{key} sets it)',
                        assigner[key])
        self.initial_assigner = build_at(
            TASK_UTILS, train_cfg['initial_assigner'],
            'model.train_cfg.initial_assigner')
        self.assigner = build_at(TASK_UTILS, assigner,
                                 'model.train_cfg.assigner')
        self._was_warming_up: Optional[bool] = None

    def warming_up(self) -> bool:
        """Whether this training step belongs to the ATSS warm-up."""
        hub = MessageHub.get_current_instance()
        epoch, iteration = hub.get_info('epoch'), hub.get_info('iter')
        if iteration is None:
            raise RuntimeError(
                "The loss reads the training progress from mmengine's "
                "MessageHub, which a Runner's train loop sets; outside one, "
                "set it first: MessageHub.get_current_instance()"
                ".update_info('epoch', 5), update_info('iter', 500).")
        by_iter = self.initial_iter is not None
        warmup = (iteration < self.initial_iter if by_iter else
                  (epoch or 0) < self.initial_epoch)
        if warmup != self._was_warming_up:
            single = warmup and not by_iter and hub.get_info('max_epochs') == 1
            print_log(f'Epoch {epoch}, iteration {iteration}: ' + (
                'ATSS warm-up assignment' if warmup else
                'task-aligned assignment (TAL)') + (
                '; this run has a single epoch (as an iteration-based loop '
                'has), so it stays in the warm-up unless '
                'model.train_cfg.initial_iter is set' if single else ''),
                logger='current', level=WARNING if single else INFO)
            self._was_warming_up = warmup
        return warmup

    def warmup_problem(self, iteration_based: bool) -> Optional[str]:
        """Why the warm-up would never end under the run's train loop, or
        None: one counted in epochs never ends under an iteration-based
        loop, which runs as a single epoch."""
        if not iteration_based or self.initial_iter is not None or \
                self.initial_epoch == 0:
            return None
        return (f'model.train_cfg.initial_epoch={self.initial_epoch} '
                'counts the ATSS warm-up in epochs, but train_cfg is an '
                'iteration-based loop, which runs as a single epoch: the '
                'warm-up would never end. Set model.train_cfg.initial_iter '
                'to the number of warm-up iterations, or '
                'model.train_cfg.initial_epoch=0 for none.')

    def _count_assignment(self, t: Targets,
                          data_samples: List[DetDataSample]) -> None:
        """Add a TAL batch to the totals ``tal_statistics`` reports."""
        fg = t.fg  # (B, N)
        # Each positive's GT as one number: image · N + slot.
        image = torch.arange(fg.size(0), device=fg.device)[:, None]
        gt = (image * fg.size(1) + t.assign.gt_index)[fg]
        counts = [sum(len(s.gt_instances) for s in data_samples),
                  gt.unique().numel()]
        batch = torch.cat([
            torch.tensor(counts, dtype=torch.float64, device=fg.device),
            torch.stack([fg.sum(), t.assign.metrics[fg].sum()]).double()
        ])  # GTs, GTs with a positive, positives, sum of t-hat
        self._tal_totals = batch if self._tal_totals is None else \
            self._tal_totals + batch

    def tal_statistics(self) -> Optional[Dict[str, float]]:
        """TAL's assignment over the training batches since the last call,
        summed over processes (every process must call it): positives per
        GT, the share of GTs without a positive, mean t-hat of the
        positives. None when no batch was assigned by TAL (every process
        trains the same number of batches, so all or none have totals)."""
        totals, self._tal_totals = self._tal_totals, None
        if totals is None:
            return None
        all_reduce(totals, op='sum')
        gts, covered, positives, t_hat = totals.tolist()
        if gts == 0:
            return None
        return dict(positives_per_gt=positives / gts,
                    gts_without_positive=1 - covered / gts,
                    t_hat=t_hat / max(positives, 1))

    def predictions(self, cls_scores: List[Tensor], bbox_preds: List[Tensor]
                    ) -> Tuple[List[Tensor], List[Tensor], None]:
        """What inference ranks: the head's (B, K, H, W) probabilities and
        (B, 4, H, W) boxes in stride units as they are, no score factor."""
        return cls_scores, bbox_preds, None

    def forward(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                data_samples: List[DetDataSample]) -> Dict[str, Tensor]:
        """``loss_cls`` and ``loss_bbox`` from the per-level outputs: (B, K,
        H, W) probabilities and (B, 4, H, W) boxes in stride units."""
        check_trains(self.assigner if self.trains else None)
        priors = batch_priors(cls_scores, self.strides, self.anchor_scale,
                              data_samples)
        scores = levels_to_priors(cls_scores)  # (B, N, K)
        boxes = boxes_in_pixels(bbox_preds, priors)  # (B, N, 4)
        warmup = self.warming_up()
        # The warm-up's ATSS looks at the anchors only.
        t = assign_targets(self.initial_assigner if warmup else self.assigner,
                           priors, data_samples, self.num_classes,
                           scores.detach(), boxes.detach())
        fg, valid = t.fg, t.valid  # (B, N)
        pos_target = t.boxes[fg]  # (P, 4)
        if not warmup:
            self._count_assignment(t, data_samples)
        if warmup:
            # Hard labels over the positives; boxes weighted by centerness.
            loss_cls = self.initial_loss_cls(
                scores[valid], t.labels[valid],
                avg_factor=global_normaliser(fg.sum()))
            points = priors.points.expand_as(boxes[..., :2])
            bbox_weight = centerness(points[fg], pos_target)
        else:
            # Eq. (11): targets t-hat, or 1 for the hard-label ablation; the
            # same values weight the boxes and, summed, normalise both.
            target = fg.float() if self.hard_labels else t.assign.metrics
            loss_cls = self.loss_cls(
                scores[valid], (t.labels[valid], target[valid]),
                avg_factor=global_normaliser(target.sum()))
            bbox_weight = target[fg]
        # GIoU is scale invariant, so comparing in input pixels equals the
        # stride units of the published code. Without positives the loss is
        # a sum over no boxes: 0, and still a function of every regression
        # parameter (through the indexing), as DDP needs.
        loss_bbox = self.loss_bbox(
            boxes[fg], pos_target, bbox_weight,
            avg_factor=global_normaliser(bbox_weight.sum()))
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox)
