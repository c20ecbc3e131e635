"""The assigners' dense stages, sized for the cache: what touches every
(GT, prior) pair of an image runs over chunks of GT rows.

Private to the assigners. ``dense_topk`` computes a metric for every (GT,
prior) pair (task-aligned assignment: eq. 9's ``alignment_metric``) and
keeps each GT's k largest values; ``nearest_priors`` is the ATSS
candidate search. Both run image by image over chunks of GT rows that fit
a core's cache, so their memory grows with the priors, not with priors
times GTs, and reuse their buffers from chunk to chunk: on the CPU a fresh
megabyte costs more page faults than its arithmetic.

Shapes: N priors of all levels, G GTs of one image, R GT rows of a chunk,
K classes, U classes present among the GTs, k candidates per GT.
"""
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

from tood.structures import box_area, points_inside_boxes

# Elements (GT rows x priors) of one chunk: 2^18 floats (1 MiB) stay in L2
# cache on the CPU; on a GPU, bigger chunks mean fewer kernel launches.
CPU_CHUNK, GPU_CHUNK = 1 << 18, 1 << 23


def chunk_rows(width: int, device: torch.device) -> int:
    """GT rows per chunk for rows of ``width`` elements."""
    elements = CPU_CHUNK if device.type == 'cpu' else GPU_CHUNK
    return max(1, elements // width)


def iou_into(a: Tensor, b: Tensor, out: Tensor,
             scratch: Tuple[Tensor, Tensor],
             areas: Tuple[Tensor, Tensor]) -> Tensor:
    """``box_iou(a, b)`` written into ``out``, with two scratch tensors of
    its shape and the boxes' precomputed areas: (R, 1, 4), (N, 4) -> (R,
    N). The same arithmetic as ``tood.structures.box_iou``, in place."""
    ax1, ay1, ax2, ay2 = a.unbind(-1)
    bx1, by1, bx2, by2 = b.unbind(-1)
    w, h = scratch
    torch.minimum(ax2, bx2, out=out)
    out.sub_(torch.maximum(ax1, bx1, out=w)).clamp_(min=0)
    torch.minimum(ay2, by2, out=w)
    w.sub_(torch.maximum(ay1, by1, out=h)).clamp_(min=0)
    inter = out.mul_(w)
    union = torch.add(areas[0], areas[1], out=w).sub_(inter)
    return inter.div_(union.clamp_(min=1e-6))


def dense_topk(metric: Callable[..., Tensor], scores: Tensor,
               boxes: Tensor, points: Tensor, gt_bboxes: Tensor,
               gt_labels: Tensor, prior_valid: Tensor, k: int,
               inside_first: bool) -> Tuple[Tensor, Tensor]:
    """The k largest ``metric(s, u)`` of each GT of one image, where s is a
    prior's score for the GT's class and u the IoU of its box with the GT.

    Args:
        metric: (R, N) scores, (R, N) IoUs and ``out``, an (R, N) tensor
            to write the values into.
        scores: (N, K); boxes: (N, 4); points: (N, 2); gt_bboxes: (G, 4);
        gt_labels: (G,); prior_valid: (N,).
        inside_first: only priors whose point lies inside the GT compete
            (an ablation of TAL).
    Returns:
        (G, k) values (-1 for invalid priors) and prior indices.
    """
    N, G = boxes.size(0), gt_bboxes.size(0)
    # The top-k runs in two stages over blocks of a row (``topk_by_blocks``)
    # whose width must be a whole number of blocks; the -inf padding is
    # never picked, since every row holds k values >= -1.
    block = max(1, min(64, N // (4 * k)))
    width = -(-N // block) * block
    rows = min(G, chunk_rows(width, boxes.device))
    # Three buffers for the whole image, reused by every chunk.
    t = boxes.new_full((rows, width), float('-inf'))
    u, s = boxes.new_empty(rows, N), boxes.new_empty(rows, N)
    boxes = boxes.t().contiguous().t()  # contiguous coordinates
    box_areas, gt_areas = box_area(boxes), box_area(gt_bboxes)[:, None]
    # The score rows of the classes present, read once.
    classes, class_of_gt = gt_labels.unique(return_inverse=True)
    class_scores = scores.t().index_select(0, classes)  # (U, N)
    # Priors on the batch padding must never be candidates.
    invalid = None if bool(prior_valid.all()) else ~prior_valid
    values, indices = boxes.new_empty(G, k), gt_labels.new_empty(G, k)
    for start in range(0, G, rows):
        r, gts = min(rows, G - start), slice(start, start + rows)
        iou_into(gt_bboxes[gts, None], boxes, u[:r], (t[:r, :N], s[:r]),
                 (gt_areas[gts], box_areas))
        torch.index_select(class_scores, 0, class_of_gt[gts], out=s[:r])
        chunk = metric(s[:r], u[:r], out=t[:r, :N])
        if invalid is not None:
            chunk.masked_fill_(invalid, -1.0)
        if inside_first:
            chunk.masked_fill_(
                ~points_inside_boxes(points, gt_bboxes[gts, None]), -1.0)
        values[gts], indices[gts] = topk_by_blocks(t[:r], k, block)
    return values, indices


def topk_by_blocks(values: Tensor, k: int,
                   block: int) -> Tuple[Tensor, Tensor]:
    """Row-wise top-k of (R, M·block) values: (R, k) values and indices.

    The k largest values of a row all lie in the k blocks with the largest
    block maxima, so a max per block, a top-k over the blocks and a top-k
    over k·block values replace a top-k over the whole row (about 4x
    faster). Among tied values the index is arbitrary, as with torch.topk.
    """
    rows = values.size(0)
    top_blocks = values.view(rows, -1, block).amax(-1).topk(k, dim=-1).indices
    offsets = torch.arange(block, device=values.device)
    idx = (top_blocks[:, :, None] * block + offsets).view(rows, k * block)
    top_values, j = values.gather(1, idx).topk(k, dim=-1)
    return top_values, idx.gather(1, j)


def nearest_priors(centres: Tensor, level_sizes: List[int],
                   gt_centres: Tensor, prior_valid: Tensor,
                   topk: int) -> Tuple[Tensor, Tensor]:
    """Per level, the ``topk`` valid priors nearest each GT centre.

    Args:
        centres: (N, 2) anchor centres; level_sizes: priors per level;
        gt_centres: (G, 2); prior_valid: (N,).
    Returns:
        (G, k) prior indices, level after level, and whether each one is
        valid (a level with fewer than topk valid priors still fills its
        slots; the invalid ones are masked out).
    """
    cand_idx, cand_valid, start = [], [], 0
    for n in level_sizes:
        k = min(topk, n)
        cx, cy = centres[start:start + n].t().contiguous()
        level_valid = prior_valid[start:start + n]
        idx = []
        for g in gt_centres.split(chunk_rows(n, centres.device)):  # (R, 2)
            # (R, n) squared distances (enough for the ranking).
            dist = (g[:, 0, None] - cx).square_()
            dist += (g[:, 1, None] - cy).square_()
            dist.masked_fill_(~level_valid, float('inf'))
            idx.append(dist.topk(k, dim=-1, largest=False).indices)
        idx = torch.cat(idx)
        cand_valid.append(level_valid[idx])
        cand_idx.append(idx + start)
        start += n
    return torch.cat(cand_idx, -1), torch.cat(cand_valid, -1)


def power(x: Tensor, exponent: float, out: Optional[Tensor] = None) -> Tensor:
    """x ** exponent, into ``out`` when given (it must not be ``x``).

    Integer exponents (beta = 6 in the paper) go by repeated squaring: a
    few multiplications instead of a pow per element, several times faster
    on the CPU.
    """
    if exponent != int(exponent) or not 1 <= exponent <= 64:
        return torch.pow(x, exponent, out=out)
    bits = bin(int(exponent))[3:]  # after the leading 1
    if not bits:
        return x if out is None else out.copy_(x)
    result = torch.mul(x, x, out=out)
    if bits[0] == '1':
        result.mul_(x)
    for bit in bits[1:]:
        result.square_()
        if bit == '1':
            result.mul_(x)
    return result
