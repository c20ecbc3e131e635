"""Experiment tracking: TensorBoard and MLflow switched on from the command
line, a short training read back from the event file and the MLflow file
store with their own readers, and where the MLflow backend sends runs."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.registry import DefaultScope
from mmengine.visualization import LocalVisBackend, TensorboardVisBackend

from tood.engine.tracking import MLflowVisBackend, Visualizer
from tood.registry import VISUALIZERS

from robust_helpers import make_shapes, tool_env, train_args

mlflow = pytest.importorskip(
    'mlflow', reason="the tracking extra: pip install -e '.[tracking]'")
pytest.importorskip(
    'tensorboard', reason="the tracking extra: pip install -e '.[tracking]'")

BACKENDS = 'visualizer.vis_backends=[LocalVisBackend,' \
    'TensorboardVisBackend,MLflowVisBackend]'


def clean_env(**extra) -> dict:
    """The test's environment without the user's MLflow settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('MLFLOW')}
    env.update(extra)
    return env


def test_backends_named_by_type_alone(tmp_path):
    with DefaultScope.overwrite_default_scope('tood'):
        visualizer = VISUALIZERS.build(
            dict(type='Visualizer', name='named_backends',
                 vis_backends=['LocalVisBackend', 'TensorboardVisBackend',
                               dict(type='MLflowVisBackend', exp_name='x')],
                 save_dir=str(tmp_path)))
    assert isinstance(visualizer, Visualizer)
    backends = visualizer._vis_backends
    assert isinstance(backends['LocalVisBackend'], LocalVisBackend)
    assert isinstance(backends['TensorboardVisBackend'],
                      TensorboardVisBackend)
    # The tood scope builds our MLflow backend under mmengine's name.
    assert type(backends['MLflowVisBackend']) is MLflowVisBackend


def log_one_run(save_dir: str, env: dict) -> None:
    """A config and two scalars through the backend, in a process with
    ``env`` (the backend reads MLflow's variables)."""
    with open(osp.join(save_dir, 'my_job.py'), 'w') as f:
        f.write("work_dir = '.'\nlr = 0.01\n")
    code = (
        'from mmengine.config import Config\n'
        'from tood.engine.tracking import MLflowVisBackend\n'
        f'backend = MLflowVisBackend(save_dir={save_dir!r})\n'
        "backend.add_config(Config.fromfile('my_job.py'))\n"
        "backend.add_scalars({'loss': 1.5, 'coco/bbox_mAP': 0.25}, step=3)\n"
        'backend.close()\n')
    proc = subprocess.run([sys.executable, '-c', code], env=tool_env(env),
                          cwd=save_dir, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture
def read_file_stores(monkeypatch):
    """MLflow 3 reads a file store only with this set."""
    monkeypatch.setenv('MLFLOW_ALLOW_FILE_STORE', 'true')


def only_run(tracking_uri: str):
    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments])
    assert len(runs) == 1
    experiment = client.get_experiment(runs[0].info.experiment_id)
    return client, experiment, runs[0]


def test_mlflow_follows_the_tracking_uri_of_the_environment(
        tmp_path, read_file_stores):
    # mmengine's backend always wrote into save_dir, ignoring it.
    store = tmp_path / 'shared_store'
    save_dir = tmp_path / '20260101_000000' / 'vis_data'
    save_dir.mkdir(parents=True)
    log_one_run(
        str(save_dir),
        clean_env(MLFLOW_TRACKING_URI=f'file://{store}',
                  MLFLOW_ALLOW_FILE_STORE='true',
                  MLFLOW_EXPERIMENT_NAME='team'))
    client, experiment, run = only_run(f'file://{store}')
    assert experiment.name == 'team'
    assert run.info.run_name == 'my_job_20260101_000000'
    assert run.data.metrics == {'loss': 1.5, 'coco/bbox_mAP': 0.25}
    assert run.data.params['lr'] == '0.01'
    # Nothing but the config went into save_dir.
    assert {p.name for p in save_dir.iterdir()} <= {'my_job.py', '.trash'}


@pytest.mark.e2e
def test_a_training_logs_every_scalar_to_tensorboard_and_mlflow(
        tmp_path, read_file_stores):
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator

    root = make_shapes(str(tmp_path))
    work_dir = str(tmp_path / 'work')
    # No MLFLOW_* variables in the training: the default local store,
    # which MLflow 3 refuses unless the backend allows it.
    proc = subprocess.run(
        train_args(work_dir, BACKENDS), cwd=root,
        env=tool_env(clean_env()), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-5000:]

    (run_dir, ) = [d for d in os.listdir(work_dir)
                   if osp.isdir(osp.join(work_dir, d))]
    vis_data = osp.join(work_dir, run_dir, 'vis_data')
    # What LocalVisBackend wrote is what was logged: training records
    # (step = iteration) and validation records (step = epoch).
    with open(osp.join(vis_data, 'scalars.json')) as f:
        records = [json.loads(line) for line in f]
    train = [r for r in records if 'loss' in r]
    val = [r for r in records if 'coco/bbox_mAP' in r]
    assert len(train) == 8 and len(val) == 2
    expected = {}
    for record in records:
        for key, value in record.items():
            if key != 'step':
                expected.setdefault(key, []).append(
                    (record['step'], value))
    for key in ('loss', 'loss_cls', 'loss_bbox', 'lr', 'coco/bbox_mAP',
                'coco/bbox_mAP_50', 'coco/bbox_mAP_s'):
        assert key in expected

    events = EventAccumulator(vis_data)
    events.Reload()
    assert set(events.Tags()['scalars']) == set(expected)
    for key, points in expected.items():
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(s, pytest.approx(v, rel=1e-6))
                          for s, v in points], key

    client, experiment, run = only_run(f'file://{vis_data}')
    assert experiment.name == 'tiny_shapes_config'
    assert run.info.run_name == f'tiny_shapes_config_{run_dir}'
    assert run.info.status == 'FINISHED'
    assert set(run.data.metrics) == set(expected)
    for key, points in expected.items():
        history = client.get_metric_history(run.info.run_id, key)
        logged = sorted((m.step, m.value) for m in history)
        assert [s for s, _ in logged] == [s for s, _ in sorted(points)], key
        assert [v for _, v in logged] == pytest.approx(
            [v for _, v in sorted(points)], rel=1e-6), key
    assert run.data.params['model.type'] == 'TOOD'
    # The config and the log are the run's artifacts.
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert 'tiny_shapes_config.py' in artifacts
