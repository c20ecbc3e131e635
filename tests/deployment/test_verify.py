"""compare_detections: pairing detections of two runtimes."""
import numpy as np

from tood.deployment import Detections, compare_detections


def dets(boxes, scores, labels) -> Detections:
    return Detections(
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(scores, np.float64), np.asarray(labels, np.int64))


REF = dets([[0, 0, 10, 10], [5, 5, 20, 20], [30, 30, 40, 45]],
           [0.9, 0.50001, 0.5], [1, 2, 2])


def test_identical_and_reordered():
    assert compare_detections(REF, REF).ok
    # Near-equal scores may swap places between runtimes.
    swapped = dets(REF.boxes[[0, 2, 1]] + 0.004, REF.scores[[0, 2, 1]] + 5e-5,
                   REF.labels[[0, 2, 1]])
    result = compare_detections(REF, swapped)
    assert result.ok, result.summary()
    assert 0.0039 < result.max_box_diff <= 0.0041
    assert result.max_score_diff <= 5.1e-5


def test_differences_beyond_tolerance():
    moved = dets(REF.boxes + [0, 0, 0.02, 0], REF.scores, REF.labels)
    result = compare_detections(REF, moved)
    assert not result.ok and result.matched == 0
    assert 'MISMATCH' in result.summary()
    relabelled = dets(REF.boxes, REF.scores, [1, 2, 3])
    result = compare_detections(REF, relabelled)
    assert result.matched == 2 and result.unmatched_test == [2]
    assert compare_detections(REF, moved, box_tol=0.05).ok


def test_different_counts():
    fewer = dets(REF.boxes[:2], REF.scores[:2], REF.labels[:2])
    result = compare_detections(REF, fewer)
    assert not result.ok
    assert result.matched == 2 and result.unmatched_ref == [2]
    empty = dets(np.zeros((0, 4)), [], [])
    assert compare_detections(empty, empty).ok
    assert not compare_detections(REF, empty).ok
