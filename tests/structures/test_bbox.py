"""The box arithmetic every head, assigner and loss shares."""
import pytest
import torch

from tood.structures import (box_area, box_giou, box_iou, centerness,
                             delta2bbox, distance2bbox, points_inside_boxes,
                             side_distances)

A = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 10.], [0., 0., 4., 4.]])
B = torch.tensor([[5., 0., 15., 10.], [20., 20., 30., 30.], [1., 1., 3., 3.]])


def test_iou_by_hand():
    # half overlap: 50 / 150; disjoint; one box inside the other: 4 / 16
    torch.testing.assert_close(box_iou(A, B), torch.tensor([1 / 3, 0, 0.25]))


def test_iou_broadcasts_to_a_table():
    table = box_iou(A[:, None], B[None])
    assert table.shape == (3, 3)
    for i in range(3):
        for j in range(3):
            assert table[i, j] == box_iou(A[i], B[j])


def test_inverted_boxes_count_as_empty():
    inverted = torch.tensor([10., 10., 0., 0.])
    assert box_area(inverted) == 0
    assert box_iou(inverted, A[0]) == 0
    # GIoU stays in [-1, 1] and never rewards an inverted box.
    assert -1 <= box_giou(inverted, A[0]) <= 0


def test_giou_by_hand():
    # disjoint boxes: IoU 0, enclosing box 30 x 30 = 900, union 200
    assert box_giou(A[1], B[1]).item() == pytest.approx(0 - 700 / 900)
    assert box_giou(A[0], A[0]).item() == pytest.approx(1.0)
    a = A.clone().requires_grad_()
    box_giou(a, B).sum().backward()
    assert torch.isfinite(a.grad).all()


def test_coders_invert_their_targets():
    points = torch.tensor([[5., 5.], [0., 8.]])
    d = torch.tensor([[1., 2., 3., 4.], [0.5, 0.5, 0.5, 0.5]])
    boxes = distance2bbox(points, d)
    torch.testing.assert_close(side_distances(points, boxes), d)
    anchors = torch.tensor([[0., 0., 8., 8.]])
    assert delta2bbox(anchors, torch.zeros(1, 4)).tolist() == anchors.tolist()
    # dx = 1 (x std 0.1): one anchor width to the right
    moved = delta2bbox(anchors, torch.tensor([[10., 0., 0., 0.]]))
    assert moved.tolist() == [[8., 0., 16., 8.]]


def test_centerness_and_inside():
    box = torch.tensor([0., 0., 10., 20.])
    points = torch.tensor([[5., 10.], [2.5, 10.], [0.005, 10.], [11., 5.]])
    torch.testing.assert_close(
        centerness(points, box), torch.tensor([1.0, (2.5 / 7.5)**0.5,
                                               (0.005 / 9.995)**0.5, 0.0]))
    assert points_inside_boxes(points, box).tolist() == [True, True, False,
                                                         False]
