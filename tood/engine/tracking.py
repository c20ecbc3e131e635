"""Experiment tracking through mmengine's visualizer backends.

Every scalar the ``LoggerHook`` logs (losses, learning rate, times, the
validation metrics) goes to each backend of the runner's visualizer. The
default runtime has only ``LocalVisBackend`` (``vis_data/scalars.json``,
which the training report and ``tools/analysis`` read); TensorBoard and
MLflow are switched on by naming their backends (docs/training.md)::

    visualizer = dict(vis_backends=[
        'LocalVisBackend', 'TensorboardVisBackend', 'MLflowVisBackend'])

Two things here make that work:

* :class:`Visualizer`, registered under mmengine's name in the tood scope,
  takes backends given by their type name alone, which is what
  ``--cfg-options`` can write (it has no syntax for a list of dicts);
* :class:`MLflowVisBackend`, also under mmengine's name, fixes how
  mmengine 0.10.7's backend meets MLflow 3: without a ``tracking_uri``
  mmengine writes a file store under ``vis_data``, which MLflow 3 refuses
  (it asks for ``MLFLOW_ALLOW_FILE_STORE``), so the first call stopped the
  run; and it overrode ``MLFLOW_TRACKING_URI`` and
  ``MLFLOW_EXPERIMENT_NAME``, so a user's server was never reached. Its
  runs also had random names; here they are named like the log folder.
"""
import os
import os.path as osp
from typing import Sequence, Union

from mmengine.config import Config
from mmengine.visualization import MLflowVisBackend as MMEngineMLflow
from mmengine.visualization import Visualizer as MMEngineVisualizer

from tood.registry import VISBACKENDS, VISUALIZERS

BackendsType = Union[None, str, dict, Sequence[Union[str, dict]]]


def backend_configs(vis_backends: BackendsType) -> list:
    """The backends as mmengine takes them: a type name ``'X'`` becomes
    ``dict(type='X')``; dicts and built backends are kept."""
    if vis_backends is None:
        return []
    if isinstance(vis_backends, (str, dict)):
        vis_backends = [vis_backends]
    return [
        dict(type=backend) if isinstance(backend, str) else backend
        for backend in vis_backends
    ]


@VISUALIZERS.register_module()
class Visualizer(MMEngineVisualizer):
    """mmengine's ``Visualizer`` whose ``vis_backends`` may also name a
    backend by its type alone (``'TensorboardVisBackend'``)."""

    def __init__(self, name: str = 'visualizer',
                 vis_backends: BackendsType = None, **kwargs) -> None:
        super().__init__(
            name=name, vis_backends=backend_configs(vis_backends), **kwargs)


@VISBACKENDS.register_module()
class MLflowVisBackend(MMEngineMLflow):
    """mmengine's ``MLflowVisBackend`` (same arguments) that reaches a
    tracking server and works with MLflow 3.

    Where the runs go: ``tracking_uri`` if given, else the environment's
    ``MLFLOW_TRACKING_URI``, else (as in mmengine) a local file store in
    the run's ``vis_data`` folder. MLflow 3 keeps file stores only in
    maintenance and refuses them unless ``MLFLOW_ALLOW_FILE_STORE`` is
    set; for the local default this backend sets it (in this process,
    when the first scalar or the config is logged). The experiment is
    ``exp_name``, else ``MLFLOW_EXPERIMENT_NAME``, else the config's file
    name; the run is ``run_name``, else ``<config>_<timestamp>``, the name
    of the run's log folder.
    """

    def add_config(self, config: Config, **kwargs) -> None:
        # Called first, by the runner: names are settled before the
        # backend connects (mmengine's decorator connects on this call).
        stem = osp.splitext(osp.basename(config.filename or 'config'))[0]
        if self._exp_name is None:
            self._exp_name = os.environ.get('MLFLOW_EXPERIMENT_NAME') or stem
        if self._run_name is None:
            # save_dir is <work_dir>/<timestamp>/vis_data.
            timestamp = osp.basename(osp.dirname(osp.abspath(
                self._save_dir)))
            self._run_name = f'{stem}_{timestamp}'
        super().add_config(config, **kwargs)

    def _init_env(self) -> None:
        if self._tracking_uri is None:
            self._tracking_uri = os.environ.get('MLFLOW_TRACKING_URI') or None
        if self._tracking_uri is None:
            # mmengine's default, a file store in save_dir: ours to make
            # work (a store the user chose is left to MLflow's rules).
            os.environ.setdefault('MLFLOW_ALLOW_FILE_STORE', 'true')
        super()._init_env()
