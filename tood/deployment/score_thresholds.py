"""Per-class score thresholds stored with a model, for
``tools/infer.py --score-thr auto``.

``tools/analysis/operating_point.py --write`` chooses them (the F1-optimal
threshold of each class) and stores one dict,
``dict(classes=[...], score_thr=[...], overall=float, iou='0.5', ...)``:

* in a checkpoint, as ``meta['score_thresholds']``; the file is rewritten
  whole through a temporary file and a rename, everything else in it
  kept;
* in an exported ONNX model, as the metadata entry
  ``tood.score_thresholds`` (json), next to the exporter's ``tood.*``
  entries; the graph is not touched.
"""
import io
import json
import os.path as osp
from typing import List, Optional, Sequence

import torch

from tood.engine.checkpoint import atomic_write, load_from_local
from tood.errors import ConfigError

CHECKPOINT_KEY = 'score_thresholds'
ONNX_KEY = 'tood.score_thresholds'


def _check(thresholds: dict) -> None:
    classes, values = thresholds.get('classes'), thresholds.get('score_thr')
    if not classes or values is None or len(classes) != len(values):
        raise ValueError('score thresholds need one value per class, got '
                         f'{thresholds!r}')


def write_checkpoint_thresholds(path: str, thresholds: dict) -> None:
    """Store ``thresholds`` in the checkpoint's meta, atomically (a crash
    leaves the old file whole)."""
    _check(thresholds)
    checkpoint = load_from_local(path, map_location='cpu')
    checkpoint.setdefault('meta', {})[CHECKPOINT_KEY] = dict(thresholds)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write(path, buffer.getvalue())


def write_onnx_thresholds(path: str, thresholds: dict) -> None:
    """Store ``thresholds`` in an ONNX model's metadata (replacing an
    earlier entry), atomically."""
    import onnx

    _check(thresholds)
    # Weights stored beside the model (large models) stay where they are:
    # the rewritten file keeps pointing at them.
    model = onnx.load(path, load_external_data=False)
    for entry in list(model.metadata_props):
        if entry.key == ONNX_KEY:
            model.metadata_props.remove(entry)
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_KEY, json.dumps(thresholds)
    atomic_write(path, model.SerializeToString())


def read_score_thresholds(path: str) -> Optional[dict]:
    """The thresholds stored in a checkpoint or an ``.onnx`` file, or None
    when it has none."""
    if path.endswith('.onnx'):
        import onnx

        model = onnx.load(path, load_external_data=False)
        for entry in model.metadata_props:
            if entry.key == ONNX_KEY:
                return json.loads(entry.value)
        return None
    meta = load_from_local(path, map_location='cpu').get('meta') or {}
    return meta.get(CHECKPOINT_KEY)


def thresholds_for_classes(path: str, classes: Sequence[str]) -> List[float]:
    """The stored thresholds of ``path`` in the order of ``classes`` (the
    model's), for ``--score-thr auto``.

    Raises:
        ConfigError: the file has none, or they are for other classes.
    """
    stored = read_score_thresholds(path)
    if stored is None:
        raise ConfigError(
            f'{path} holds no score thresholds for --score-thr auto: '
            'choose them with tools/analysis/operating_point.py CONFIG '
            'CHECKPOINT --write (add --onnx MODEL.onnx for an exported '
            'model), or give a number')
    by_name = dict(zip(stored['classes'], stored['score_thr']))
    missing = [name for name in classes if name not in by_name]
    if missing:
        raise ConfigError(
            f'the score thresholds in {osp.basename(path)} are for the '
            f'classes {stored["classes"]}; the model has '
            f'{list(classes)} ({", ".join(missing)} missing): choose them '
            'again with tools/analysis/operating_point.py --write')
    return [float(by_name[name]) for name in classes]
