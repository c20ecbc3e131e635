import torch
from mmengine.structures import InstanceData

from tood.structures import DetDataSample, PaddedGT


def sample(num):
    s = DetDataSample()
    s.gt_instances = InstanceData(
        bboxes=torch.arange(num * 4, dtype=torch.float32).view(num, 4),
        labels=torch.arange(num))
    return s


def test_pads_to_the_most_gts_of_an_image():
    gt = PaddedGT.from_samples([sample(3), sample(0), sample(1)], 'cpu')
    assert gt.bboxes.shape == (3, 3, 4)
    assert gt.valid.tolist() == [[True] * 3, [False] * 3,
                                 [True, False, False]]
    assert gt.labels[0].tolist() == [0, 1, 2]
    assert torch.equal(gt.bboxes[2, 0], torch.arange(4.0))


def test_no_gts_keeps_one_slot():
    gt = PaddedGT.from_samples([sample(0), sample(0)], 'cpu')
    assert gt.bboxes.shape == (2, 1, 4) and not gt.valid.any()
