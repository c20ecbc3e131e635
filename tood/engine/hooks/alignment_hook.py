"""TOOD's claim, measured at every validation: are classification and
localisation aligned, and what does Task-aligned Learning assign?

Logged beside the metrics (``align/...`` in the log, ``scalars.json``,
TensorBoard and MLflow; plotted in ``report/curves.png``):

* over the validation images, for each ground-truth box with at least two
  candidate priors (``tood.models.task_modules.alignment``):
  ``align/distance`` (mean distance between the best-score and the
  best-IoU prior, original-image pixels), ``align/aligned`` (the share of
  boxes whose top-scored prior is also their best-localised one),
  ``align/top_iou`` (mean IoU of the top-scored prediction) and
  ``align/spearman`` (mean rank correlation of score and IoU over the
  box's candidates);
* over the training batches since the last validation that TAL assigned
  (after the warm-up; ``TaskAlignedCriterion.tal_statistics``):
  ``align/tal_positives_per_gt``, ``align/tal_gts_without_positive`` and
  ``align/tal_t_hat`` (mean t-hat of the positives).
"""
import math
from typing import Dict, Optional, Sequence

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from tood.registry import HOOKS

# Boxes with fewer candidates say nothing about alignment: with one, both
# best priors are that prior.
MIN_CANDIDATES = 2
# Sums kept over the validation: boxes counted, distance, aligned, top IoU,
# boxes with a Spearman correlation, its sum.
_SUMS = ('boxes', 'distance', 'aligned', 'top_iou', 'correlated', 'spearman')


@HOOKS.register_module()
class AlignmentHook(Hook):
    """Measures the alignment at every validation (module docstring).

    The detector computes each validation image's alignment while the hook
    asks for it (``TOOD.measure_alignment``), from the head outputs it
    computes anyway; models without it are left alone.
    """

    priority = 'NORMAL'  # before the logger hook, which writes the scalars

    def __init__(self) -> None:
        self._sums: Optional[torch.Tensor] = None

    @staticmethod
    def _detector(runner):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        return model if hasattr(model, 'measure_alignment') else None

    def before_val_epoch(self, runner) -> None:
        detector = self._detector(runner)
        if detector is not None:
            detector.measure_alignment = True
        self._sums = torch.zeros(len(_SUMS), dtype=torch.float64)

    def after_val_iter(self, runner, batch_idx: int, data_batch=None,
                       outputs: Optional[Sequence] = None) -> None:
        for sample in outputs or ():
            found = sample.get('alignment')
            if found is None:
                continue
            counted = found['num_candidates'] >= MIN_CANDIDATES
            spearman = found['spearman'][counted]
            correlated = ~torch.isnan(spearman)
            self._sums += torch.tensor([
                float(counted.sum()),
                float(found['distance'][counted].sum()),
                float(found['aligned'][counted].sum()),
                float(found['top_iou'][counted].sum()),
                float(correlated.sum()),
                float(spearman[correlated].sum())
            ], dtype=torch.float64)

    def after_val_epoch(self, runner,
                        metrics: Optional[Dict[str, float]] = None) -> None:
        detector = self._detector(runner)
        if detector is None:
            return
        detector.measure_alignment = False
        sums = self._sums if self._sums is not None else torch.zeros(
            len(_SUMS), dtype=torch.float64)
        all_reduce(sums, op='sum')
        total = dict(zip(_SUMS, sums.tolist()))
        scalars = {}
        if total['boxes']:
            scalars.update({
                'align/distance': total['distance'] / total['boxes'],
                'align/aligned': total['aligned'] / total['boxes'],
                'align/top_iou': total['top_iou'] / total['boxes'],
            })
        if total['correlated']:
            scalars['align/spearman'] = total['spearman'] / total[
                'correlated']
        criterion = getattr(detector.bbox_head, 'criterion', None)
        tal = getattr(criterion, 'tal_statistics', None)
        statistics = tal() if callable(tal) else None
        for key, value in (statistics or {}).items():
            scalars[f'align/tal_{key}'] = value
        for key, value in scalars.items():
            if math.isfinite(value):
                runner.message_hub.update_scalar(f'val/{key}', value)
                if metrics is not None:
                    metrics[key] = value
