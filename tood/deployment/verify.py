"""Compare the detections of an exported model with PyTorch's.

Two runs of the same detector on the same image give the same detections
up to floating-point noise, but detections whose scores are nearly equal
may come out in a different order. The comparison therefore pairs them
(same label, boxes and scores within tolerance, an optimal one-to-one
assignment) instead of comparing rank by rank.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

# Default tolerances: boxes in original-image pixels, scores absolute.
BOX_TOL = 0.01
SCORE_TOL = 1e-4


@dataclass
class Detections:
    """One image's detections as arrays.

    Attributes:
        boxes: (M, 4) float x1 y1 x2 y2, original-image pixels.
        scores: (M,) float.
        labels: (M,) int.
    """
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def from_instances(cls, instances) -> 'Detections':
        """From an ``InstanceData`` with ``bboxes``, ``scores``, ``labels``
        (torch tensors or arrays)."""

        def arr(x):
            return x.detach().cpu().numpy() if hasattr(x, 'detach') else \
                np.asarray(x)

        return cls(
            arr(instances.bboxes).reshape(-1, 4).astype(np.float64),
            arr(instances.scores).reshape(-1).astype(np.float64),
            arr(instances.labels).reshape(-1).astype(np.int64))


@dataclass
class Comparison:
    """How two sets of detections of one image differ.

    Attributes:
        num_ref, num_test: detection counts.
        matched: pairs within tolerance.
        max_box_diff: largest |coordinate difference| over matched pairs
            (px); 0 when none matched.
        max_score_diff: largest |score difference| over matched pairs.
        unmatched_ref, unmatched_test: indices left without a partner.
    """
    num_ref: int
    num_test: int
    matched: int
    max_box_diff: float
    max_score_diff: float
    unmatched_ref: List[int] = field(default_factory=list)
    unmatched_test: List[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Same count and every detection paired within tolerance."""
        return (self.num_ref == self.num_test == self.matched)

    def summary(self) -> str:
        state = 'OK' if self.ok else 'MISMATCH'
        text = (f'{state}: {self.num_test} detections vs {self.num_ref} in '
                f'PyTorch, {self.matched} paired, max box diff '
                f'{self.max_box_diff:.3g} px, max score diff '
                f'{self.max_score_diff:.3g}')
        if not self.ok:
            text += (f'; unpaired PyTorch {self.unmatched_ref[:5]}, '
                     f'unpaired exported {self.unmatched_test[:5]}')
        return text


def compare_detections(ref: Detections,
                       test: Detections,
                       box_tol: float = BOX_TOL,
                       score_tol: float = SCORE_TOL) -> Comparison:
    """Pair ``test`` detections with ``ref`` ones one-to-one.

    Two detections may pair when their labels are equal, every box
    coordinate differs by at most ``box_tol`` and the scores by at most
    ``score_tol``; among the allowed pairings the one with the smallest
    total difference is taken (Hungarian assignment).
    """
    from scipy.optimize import linear_sum_assignment
    n_ref, n_test = len(ref), len(test)
    if n_ref == 0 or n_test == 0:
        return Comparison(n_ref, n_test, 0, 0.0, 0.0, list(range(n_ref)),
                          list(range(n_test)))
    box_diff = np.abs(ref.boxes[:, None, :] - test.boxes[None, :, :]).max(-1)
    score_diff = np.abs(ref.scores[:, None] - test.scores[None, :])
    allowed = ((ref.labels[:, None] == test.labels[None, :]) &
               (box_diff <= box_tol) & (score_diff <= score_tol))
    # Normalised differences, so that both tolerances weigh the same; a
    # pair that is not allowed costs more than any allowed assignment.
    cost = box_diff / max(box_tol, 1e-12) + score_diff / max(score_tol,
                                                               1e-12)
    cost = np.where(allowed, cost, 1e9)
    rows, cols = linear_sum_assignment(cost)
    good = allowed[rows, cols]
    rows, cols = rows[good], cols[good]
    return Comparison(
        num_ref=n_ref,
        num_test=n_test,
        matched=int(good.sum()),
        max_box_diff=float(box_diff[rows, cols].max()) if len(rows) else 0.0,
        max_score_diff=float(score_diff[rows, cols].max())
        if len(rows) else 0.0,
        unmatched_ref=sorted(set(range(n_ref)) - set(rows.tolist())),
        unmatched_test=sorted(set(range(n_test)) - set(cols.tolist())))


def verify_onnx(model,
                onnx_detector,
                images: Sequence,
                box_tol: float = BOX_TOL,
                score_tol: float = SCORE_TOL,
                log: Optional[callable] = print) -> List[Comparison]:
    """Run PyTorch and ONNX Runtime on the same images and compare.

    Args:
        model: from ``tood.apis.init_detector``.
        onnx_detector: an ``OnnxDetector`` of the exported model.
        images: paths or (H, W, 3) uint8 BGR arrays; each goes through the
            same test pipeline in both runs, one image per forward pass.
        box_tol, score_tol: see ``compare_detections``.
        log: called with one line per image (None: silent).
    Returns:
        One ``Comparison`` per image.
    """
    from tood.apis import inference_detector
    results = []
    for i, image in enumerate(images):
        ref = inference_detector(model, image)
        test = inference_detector(onnx_detector, image)
        comparison = compare_detections(
            Detections.from_instances(ref.pred_instances),
            Detections.from_instances(test.pred_instances), box_tol,
            score_tol)
        results.append(comparison)
        if log is not None:
            name = image if isinstance(image, str) else f'image {i}'
            h, w = ref.metainfo['img_shape'][:2]
            log(f'{name} (input {h}x{w}): {comparison.summary()}')
    return results


def verify_files(config,
                 checkpoint: Optional[str],
                 onnx_file: str,
                 sources: Sequence[str],
                 cfg_options: Optional[dict] = None,
                 max_images: int = 20,
                 box_tol: float = BOX_TOL,
                 score_tol: float = SCORE_TOL,
                 log: Optional[callable] = print) -> bool:
    """Compare an exported model with its PyTorch original on the images
    ``sources`` name (files, folders, glob patterns; at most
    ``max_images``); logs one line per image and a summary.

    Returns:
        Whether every image agreed (``Comparison.ok``).
    """
    from tood.apis import find_images, init_detector
    from .onnx_runtime import OnnxDetector

    images = []
    for source in sources:
        images += find_images(source)
    images = images[:max_images]
    model = init_detector(config, checkpoint, 'cpu', cfg_options)
    detector = OnnxDetector(onnx_file, config, cfg_options, device='cpu')
    results = verify_onnx(model, detector, images, box_tol, score_tol, log)
    bad = sum(not r.ok for r in results)
    if log is not None:
        total = sum(r.num_ref for r in results)
        box = max((r.max_box_diff for r in results), default=0.0)
        score = max((r.max_score_diff for r in results), default=0.0)
        log(f'{len(results) - bad}/{len(results)} images agree ({total} '
            f'PyTorch detections; max box diff {box:.3g} px, max score diff '
            f'{score:.3g}; tolerances {box_tol} px, {score_tol})')
    return bad == 0
