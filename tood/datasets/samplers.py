"""Batch samplers."""
from typing import Iterator, List

from torch.utils.data import BatchSampler, Sampler

from tood.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class AspectRatioBatchSampler(BatchSampler):
    """Batches of images that are all landscape (w >= h) or all portrait.

    Padding a batch to its largest image wastes less when orientations are
    not mixed. Indices come in the inner sampler's order and are put in one
    of two buckets; a full bucket is yielded. At the end the two remainders
    are chained and yielded in batches (so these last batches may mix
    orientations), the final short one only if not ``drop_last``. Thus there
    are ``len(sampler) // batch_size`` batches with ``drop_last`` and
    ``ceil(len(sampler) / batch_size)`` without, whatever the orientations.

    Args:
        sampler: yields dataset indices; its ``dataset`` must provide
            ``get_data_info(idx)`` with ``width`` and ``height``.
        batch_size: images per batch.
        drop_last: drop the final batch if it is short.
    """

    def __init__(self,
                 sampler: Sampler,
                 batch_size: int,
                 drop_last: bool = False) -> None:
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(
                f'batch_size must be a positive int, got {batch_size}')
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[List[int]]:
        dataset = self.sampler.dataset
        buckets: List[List[int]] = [[], []]
        for idx in self.sampler:
            info = dataset.get_data_info(idx)
            bucket = buckets[int(info['width'] >= info['height'])]
            bucket.append(idx)
            if len(bucket) == self.batch_size:
                yield bucket[:]
                bucket.clear()
        rest = buckets[0] + buckets[1]
        for start in range(0, len(rest), self.batch_size):
            batch = rest[start:start + self.batch_size]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size
