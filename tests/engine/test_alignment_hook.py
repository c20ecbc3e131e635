"""The alignment telemetry: TAL's statistics counted by the criterion, and
AlignmentHook's scalars at every validation of a real (tiny) training."""
import pytest
import torch
from mmengine.structures import InstanceData
from robust_helpers import finish, logged, make_shapes, start, train_args

from tood.models.criteria import TaskAlignedCriterion, Targets
from tood.models.task_modules import AssignResult
from tood.structures import DetDataSample

TRAIN_CFG = dict(initial_epoch=1,
                 initial_assigner=dict(type='ATSSAssigner', topk=9),
                 assigner=dict(type='TaskAlignedAssigner', topk=13))


def samples(*num_gts):
    out = []
    for n in num_gts:
        s = DetDataSample()
        s.gt_instances = InstanceData(bboxes=torch.zeros(n, 4),
                                      labels=torch.zeros(n, dtype=torch.long))
        out.append(s)
    return out


def test_tal_statistics_count_what_was_assigned():
    criterion = TaskAlignedCriterion(3, (8, ), 8, TRAIN_CFG)
    assert criterion.tal_statistics() is None  # nothing assigned yet
    # Image 0 (3 GTs): priors 0, 1 to GT 0, prior 3 to GT 2; image 1 (2
    # GTs): prior 2 to GT 1. GT 1 of image 0 and GT 0 of image 1 have none.
    gt_index = torch.tensor([[0, 0, -1, 2], [-1, -1, 1, -1]])
    fg = gt_index >= 0
    metrics = torch.tensor([[0.5, 0.25, 0, 0.75], [0, 0, 0.5, 0]])
    assign = AssignResult(gt_index, fg, metrics, metrics)
    targets = Targets(assign, gt_index, torch.zeros(2, 4, 4), fg,
                      torch.ones_like(fg))
    criterion._count_assignment(targets, samples(3, 2))
    criterion._count_assignment(targets, samples(3, 2))  # a second batch
    stats = criterion.tal_statistics()
    assert stats == pytest.approx(dict(positives_per_gt=4 / 5,
                                       gts_without_positive=2 / 5,
                                       t_hat=2.0 / 4))
    assert criterion.tal_statistics() is None  # read once


@pytest.mark.e2e
def test_every_validation_logs_the_alignment(tmp_path):
    """Two epochs, ATSS in the first: both validations log the alignment
    of the val images; only the second, after TAL batches, TAL's
    statistics."""
    data = make_shapes(str(tmp_path / 'shapes'))
    work = str(tmp_path / 'work')
    rc, out = finish(start(train_args(work), data))
    assert rc == 0, out[-3000:]
    vals = [r for r in logged(work) if 'coco/bbox_mAP' in r]
    assert len(vals) == 2
    for record in vals:
        assert 0 <= record['align/aligned'] <= 1
        assert record['align/distance'] >= 0
        assert -1 <= record['align/spearman'] <= 1
        assert 0 <= record['align/top_iou'] <= 1
    assert not any(k.startswith('align/tal_') for k in vals[0])
    assert vals[1]['align/tal_positives_per_gt'] > 0
    assert 0 <= vals[1]['align/tal_gts_without_positive'] <= 1
    assert 0 < vals[1]['align/tal_t_hat'] <= 1
