from setuptools import find_packages, setup


def read_requirements(path: str) -> list:
    with open(path) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


# onnxscript is what torch's dynamo-based exporter writes graphs with.
# onnxruntime 1.24 refuses external-data paths that leave the model's
# folder, 1.24.3 also for models read from memory and fixes out-of-bounds
# reads of crafted models (its wheels need Python 3.11 or newer).
ONNX_EXTRA = ['onnx>=1.16', 'onnxruntime>=1.24.3', 'onnxscript>=0.3']

# OpenVINO runs the exported .onnx files (fp32 and INT8) on the CPU
# (tood.deployment.runtimes); Apache-2.0, as onnxruntime is MIT.
OPENVINO_EXTRA = ['openvino>=2026.4']

# The code needs 3.10 (glob's root_dir); datasets are unpacked with
# tarfile's filter='data', which 3.10 has from 3.10.12 and 3.11 from 3.11.4.
PYTHON_REQUIRES = '>=3.10.12, !=3.11.0, !=3.11.1, !=3.11.2, !=3.11.3'

# TensorBoard and MLflow logging (docs/training.md); mlflow-skinny is
# MLflow's client without the server and UI (the full mlflow package
# brings it too).
TRACKING_EXTRA = ['tensorboard>=2.10', 'mlflow-skinny>=2.0']

setup(
    name='tood',
    version='0.1.0',
    description='TOOD: Task-aligned One-stage Object Detection, a '
    'config-driven training toolbox on mmengine',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['tood', 'tood.*']),
    python_requires=PYTHON_REQUIRES,
    # mmengine is pinned to 0.10.7 (requirements.txt): tood's CheckpointHook
    # replaces its private _save_checkpoint_with_step, so that a checkpoint
    # is written before the one it retires is deleted.
    install_requires=read_requirements('requirements.txt'),
    extras_require={
        # ONNX export (tools/deployment) and ONNX Runtime inference.
        'onnx': ONNX_EXTRA,
        # OpenVINO as a second runtime of the exports (docs/deployment.md).
        'openvino': ONNX_EXTRA + OPENVINO_EXTRA,
        'tracking': TRACKING_EXTRA,
        # The tests check the ONNX round trip on both runtimes and read
        # back what the tracking backends logged, so they install these
        # extras. pytest-xdist: the README's command runs the suite in two
        # processes.
        'tests': ['pytest', 'pytest-xdist'] + ONNX_EXTRA + OPENVINO_EXTRA +
        TRACKING_EXTRA,
    },
    license='Apache License 2.0',
)
