"""Time per image of each transform of a dataset's pipeline.

Where training is bound by the CPU, the data pipeline shares the cores with
the network (in the main process, or in workers beside it): a transform's
time per image, times the batch size, is added to or competes with every
step.
"""
import time
from typing import List, Tuple

from tood.datasets.wrappers import pipeline_datasets


def time_pipeline(dataset,
                  num_images: int = 50,
                  warmup: int = 20) -> List[Tuple[str, float]]:
    """Milliseconds per image spent in each transform of ``dataset``'s
    pipeline (of the first dataset inside a wrapper).

    The first ``warmup`` images are run untimed (they fill the caches of
    ``CachedMosaic`` and ``CachedMixUp`` and warm the file cache), then
    ``num_images`` images are timed, from the dataset's first onwards (its
    start again when it is shorter). An image that a transform drops
    (returns None for) ends there; the later transforms are averaged over
    the images that reached them.

    Returns:
        ``(transform class name, ms per image)`` in pipeline order, then
        ``('all', ms per image)`` for the whole pipeline.
    """
    inner = next(pipeline_datasets(dataset), None)
    if inner is None:
        raise ValueError(f'{type(dataset).__name__} has no pipeline')
    transforms = list(inner.pipeline.transforms)
    spent = [0.0] * len(transforms)
    reached = [0] * len(transforms)
    total = 0.0
    for step in range(warmup + num_images):
        results = inner.get_data_info(step % len(inner))
        timed = step >= warmup
        start = time.perf_counter()
        for index, transform in enumerate(transforms):
            begin = time.perf_counter()
            results = transform(results)
            if timed:
                spent[index] += time.perf_counter() - begin
                reached[index] += 1
            if results is None:
                break
        if timed:
            total += time.perf_counter() - start
    rows = [(type(t).__name__, 1000 * s / max(n, 1))
            for t, s, n in zip(transforms, spent, reached)]
    return rows + [('all', 1000 * total / max(num_images, 1))]
