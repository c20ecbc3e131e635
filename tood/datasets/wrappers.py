"""What lies inside mmengine's dataset wrappers."""
from typing import Iterator


def pipeline_datasets(dataset) -> Iterator:
    """The datasets that run a pipeline within ``dataset``: itself, or
    those a wrapper holds (``ClassBalancedDataset`` and ``RepeatDataset``
    in ``dataset``, ``ConcatDataset`` in ``datasets``), however nested."""
    if hasattr(dataset, 'pipeline'):
        yield dataset
    elif hasattr(dataset, 'datasets'):
        for inner in dataset.datasets:
            yield from pipeline_datasets(inner)
    elif hasattr(dataset, 'dataset'):
        yield from pipeline_datasets(dataset.dataset)
