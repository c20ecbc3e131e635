"""tools/test.py evaluates an exported model as it evaluates a checkpoint,
on every runtime, and tools/deployment/quantize_onnx.py writes an INT8
model only within its accuracy gate; on real photographs (coco128,
skipped when absent) labelled by the model itself."""
import importlib.util
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

pytest.importorskip('onnx')
pytest.importorskip('onnxscript')
pytest.importorskip('onnxruntime')
pytest.importorskip('openvino')

from onnx_helpers import (REPO, build_model, coco_photos,  # noqa: E402
                          self_labelled_coco, tiny_config, write_checkpoint)

from tood.deployment import OnnxDetector, check_onnx_file  # noqa: E402
from tood.deployment.quantize import QUANTIZED_OPS  # noqa: E402

pytestmark = pytest.mark.e2e


def run(*args: str) -> subprocess.CompletedProcess:
    """A tool in its own process (the runner's logger writes to the
    process's stdout); output merged."""
    env = {'PYTHONPATH': REPO, 'OMP_NUM_THREADS': '1'}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=600)


def metrics(log: str) -> dict:
    """The last ``coco/...: value`` of each metric in a tool's output."""
    return {key: float(value)
            for key, value in re.findall(r'(coco/bbox_mAP\w*): ([\d.]+)',
                                         log)}


@pytest.fixture(scope='module')
def labelled(tmp_path_factory):
    """A tiny COCO-sized TOOD (head spread), its checkpoint and dynamic
    export, and a config file whose splits are six coco128 photographs
    labelled by the model (``self_labelled_coco``)."""
    photos = coco_photos(6)
    root = tmp_path_factory.mktemp('labelled')
    cfg = tiny_config(**{'val_dataloader.dataset.pipeline.1.scale':
                         (320, 256)})
    model = build_model(cfg)
    cfg.merge_from_dict(self_labelled_coco(model, photos, str(root)))
    config = str(root / 'tiny_labelled.py')
    cfg.dump(config)
    ckpt = write_checkpoint(model, str(root / 'tiny.pth'))
    from tood.deployment import export_config
    onnx_file = export_config(config, ckpt, str(root / 'tiny.onnx'),
                              dynamic=True)
    return config, ckpt, onnx_file, root


def test_an_export_scores_the_checkpoints_metrics(labelled):
    config, ckpt, onnx_file, root = labelled
    work = str(root / 'work')
    reference = run('tools/test.py', config, ckpt, '--work-dir', work)
    assert reference.returncode == 0, reference.stdout[-3000:]
    expected = metrics(reference.stdout)
    # Neither 0 nor 1: the detections of each runtime move it.
    assert 0.2 < expected['coco/bbox_mAP'] < 0.95, expected
    for runtime in ('onnxruntime', 'openvino'):
        out = str(root / f'{runtime}.json')
        drawn = root / f'{runtime}_drawn'
        result = run('tools/test.py', config, onnx_file, '--runtime',
                     runtime, '--work-dir', work, '--out', out,
                     '--show-dir', str(drawn))
        assert result.returncode == 0, result.stdout[-3000:]
        assert len(list(drawn.rglob('*.jpg'))) == 6
        found = metrics(result.stdout)
        assert found.keys() == expected.keys()
        for key, value in expected.items():
            assert abs(found[key] - value) < 1e-3, (runtime, key, found)
        with open(out) as f:
            assert len(json.load(f)) > 0


def test_test_tool_refuses_what_an_export_cannot_do(labelled):
    config, ckpt, onnx_file, root = labelled
    result = run('tools/test.py', config, onnx_file, '--compile')
    assert result.returncode != 0
    assert 'torch.compile' in result.stdout and 'Traceback' not in \
        result.stdout
    result = run('tools/test.py', config, ckpt, '--runtime', 'openvino')
    assert result.returncode != 0
    assert '--runtime applies to exported .onnx models' in result.stdout


def quantize_tool():
    """tools/deployment/quantize_onnx.py as a module."""
    spec = importlib.util.spec_from_file_location(
        'quantize_onnx',
        osp.join(REPO, 'tools', 'deployment', 'quantize_onnx.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def quantized(labelled):
    """quantize_onnx.py run once on the labelled export: its process
    result and the INT8 file (both tests below read it, on whichever
    worker they run)."""
    config, ckpt, onnx_file, root = labelled
    out = str(root / 'tiny_int8.onnx')
    result = run('tools/deployment/quantize_onnx.py', config, onnx_file,
                 out, '--calib', '3', '--max-drop', '1', '--work-dir',
                 str(root / 'work'))
    return result, out


def test_quantize_writes_an_int8_model_every_runtime_loads(
        labelled, quantized):
    config, ckpt, onnx_file, root = labelled
    result, out = quantized
    assert result.returncode == 0, result.stdout[-3000:]
    assert 'calibrating on 3 training images' in result.stdout
    assert f'INT8 model written to {out}' in result.stdout
    # Weights inside the file, the fp32 export's metadata kept.
    info = check_onnx_file(out)
    assert json.loads(info.metadata['tood.num_classes']) == 80
    for runtime in ('onnxruntime', 'openvino'):
        detector = OnnxDetector(out, config, num_threads=1, runtime=runtime)
        record = detector.quantization
        assert record['ops'] == list(QUANTIZED_OPS)
        assert record['calibration_images'] == 3
        assert record['metric'] == 'coco/bbox_mAP'
        assert 0 <= record['int8'] <= 1 and record['fp32'] > 0.2
    assert OnnxDetector(onnx_file, config).quantization is None
    # tools/test.py reads it like any export.
    result = run('tools/test.py', config, out, '--work-dir',
                 str(root / 'work'))
    assert result.returncode == 0, result.stdout[-3000:]
    assert abs(metrics(result.stdout)['coco/bbox_mAP'] -
               record['int8']) < 1e-3


def test_quantize_keeps_float_what_must_stay_float(quantized):
    """Quantization stops at the last convolutions: every QuantizeLinear
    quantizes a convolution's output or a tensor on its way to a
    convolution, so the sigmoids, the box decoding, GridSample (the offset
    sampling) and NonMaxSuppression compute in float on float inputs; the
    reduction convolution of the task decomposition and the others read
    int8 constant weights."""
    import onnx
    result, out = quantized
    assert result.returncode == 0, result.stdout[-3000:]
    graph = onnx.load(out).graph
    producer = {o: node for node in graph.node for o in node.output}
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    reaches_conv = set()
    for node in reversed(graph.node):
        if any(r.op_type == 'Conv' or r.name in reaches_conv
               for o in node.output for r in readers.get(o, ())):
            reaches_conv.add(node.name)
    for node in graph.node:
        if node.op_type == 'QuantizeLinear':
            source = producer.get(node.input[0])
            assert (node.name in reaches_conv or source is not None and
                    source.op_type == 'Conv'), node.name
        if node.op_type in ('GridSample', 'NonMaxSuppression'):
            for name in node.input:
                if name in producer:
                    assert producer[name].op_type not in (
                        'DequantizeLinear', 'QuantizeLinear'), node.name
    weights = {i.name for i in graph.initializer}
    convs = [node for node in graph.node if node.op_type == 'Conv']
    assert convs and all(
        producer[node.input[1]].op_type == 'DequantizeLinear' and
        producer[node.input[1]].input[0] in weights for node in convs)
    assert not [node for node in graph.node if node.op_type == 'MatMul']


@pytest.mark.parametrize('write_anyway', [False, True])
def test_quantize_refuses_a_drop_beyond_max_drop(labelled, monkeypatch,
                                                 capsys, write_anyway):
    """The fp32 model scores 0.5, the INT8 one 0.4: beyond --max-drop 0.01
    nothing is written, or with --write-anyway the file is written with a
    warning; the exit status is 1 either way."""
    config, _, onnx_file, root = labelled
    tool = quantize_tool()
    scores = iter([{'coco/bbox_mAP': 0.5}, {'coco/bbox_mAP': 0.4}])
    monkeypatch.setattr(tool, 'validate', lambda *args: next(scores))
    out = str(root / f'refused_{write_anyway}.onnx')
    argv = [config, onnx_file, out, '--calib', '2']
    with pytest.raises(SystemExit) as exit_info:
        tool.main(argv + ['--write-anyway'] if write_anyway else argv)
    assert exit_info.value.code not in (0, None)
    assert osp.exists(out) == write_anyway
    leftovers = [p for p in root.iterdir()
                 if p.suffix == '.onnx' and p.name.startswith('tmp')]
    assert leftovers == []
    if write_anyway:
        assert 'WARNING: coco/bbox_mAP drops by 0.1000' in \
            capsys.readouterr().err
        assert OnnxDetector(out, config).quantization['int8'] == 0.4
    else:
        assert 'drops by 0.1000' in str(exit_info.value.code)
