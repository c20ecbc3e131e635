"""Analysis helpers behind ``tools/analysis``.

* ``tood.analysis.logs``: training curves from the scalar logs (numpy and
  matplotlib only; re-exported here);
* ``tood.analysis.browse``: dataset images with their boxes after the
  pipeline;
* ``tood.analysis.confusion``: the confusion matrix of test predictions.

The last two need torch (and torchvision) and are imported from their
modules, so that ``import tood.analysis`` (done by the training report
hook, hence by ``import tood.engine``) stays light.
"""
from .logs import (DEFAULT_KEYS, ScalarLog, find_scalar_files, load_work_dir,
                   plot_curves, read_scalars)

__all__ = [
    'DEFAULT_KEYS', 'ScalarLog', 'find_scalar_files', 'load_work_dir',
    'plot_curves', 'read_scalars'
]
