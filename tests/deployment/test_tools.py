"""The deployment tools and tools/infer.py's ONNX path, run in-process."""
import importlib.util
import json
import os.path as osp
import runpy

import cv2
import pytest

pytest.importorskip('onnx')
pytest.importorskip('onnxscript')
pytest.importorskip('onnxruntime')

from onnx_helpers import (REPO, build_model, tiny_config,  # noqa: E402
                          write_checkpoint)

pytestmark = pytest.mark.e2e


def tool(name: str):
    """A tool's ``main``, loaded from its file."""
    return runpy.run_path(osp.join(REPO, 'tools', name))['main']


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A tiny COCO config file, a checkpoint of its (spread) model and
    three 256x320 images, the size its Resize keeps."""
    from tood.datasets.shapes import image_rng, render_image
    root = tmp_path_factory.mktemp('tools')
    cfg = tiny_config()
    config = str(root / 'tiny_tood.py')
    cfg.dump(config)
    ckpt = write_checkpoint(build_model(cfg), str(root / 'tiny.pth'))
    images = root / 'images'
    images.mkdir()
    for i in range(3):
        sample = render_image(image_rng(1, 'val', i), 256, 320)
        cv2.imwrite(str(images / f'{i}.png'), sample.image)
    return config, ckpt, str(images), root


def test_export_with_verify(tiny, capsys):
    config, ckpt, images, root = tiny
    out = str(root / 'tiny.onnx')
    tool('deployment/export_onnx.py')(
        [config, ckpt, out, '--verify', images, '--max-images', '2'])
    text = capsys.readouterr().out
    assert 'onnx.checker passed' in text
    assert text.count(': OK: ') == 2, text
    assert '2/2 images agree' in text

    # The separate verification tool agrees, and fails loudly when the
    # tolerance is below the float32 noise.
    tool('deployment/verify_onnx.py')([config, ckpt, out, images])
    assert '3/3 images agree' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        tool('deployment/verify_onnx.py')(
            [config, ckpt, out, images, '--score-tol', '1e-12',
             '--box-tol', '1e-12'])
    assert exit_info.value.code == 1


@pytest.mark.parametrize('runtime', ['onnxruntime', 'openvino'])
def test_infer_with_an_onnx_model(tiny, runtime):
    """tools/infer.py writes the same json (and a picture) for the
    exported model, run by either runtime, as for the checkpoint."""
    if runtime == 'openvino':
        pytest.importorskip('openvino')
    config, ckpt, images, root = tiny
    out = str(root / 'tiny.onnx')
    if not osp.exists(out):
        tool('deployment/export_onnx.py')([config, ckpt, out])
    infer = tool('infer.py')
    infer([images, config, ckpt, '--out-dir', str(root / 'torch'),
           '--score-thr', '0.1', '--device', 'cpu'])
    infer([images, config, out, '--out-dir', str(root / runtime),
           '--score-thr', '0.1', '--device', 'cpu', '--runtime', runtime])
    for i in range(3):
        ref = json.load(open(root / 'torch' / f'{i}.json'))
        test = json.load(open(root / runtime / f'{i}.json'))
        assert osp.exists(root / runtime / f'{i}.png')
        assert len(test['scores']) == len(ref['scores']) > 0
        assert test['class_names'] == ref['class_names'] or sorted(
            test['class_names']) == sorted(ref['class_names'])
        # json rounds boxes to 0.01 px and scores to 1e-4: a value right
        # at a rounding boundary may round either way.
        for a, b in zip(sorted(test['scores']), sorted(ref['scores'])):
            assert abs(a - b) <= 1.01e-4
        for a, b in zip(sorted(map(tuple, test['bboxes'])),
                        sorted(map(tuple, ref['bboxes']))):
            assert max(abs(x - y) for x, y in zip(a, b)) <= 0.0101


def test_export_refuses_dcn_below_opset_19(tiny, capsys):
    config, _, _, root = tiny
    with pytest.raises(SystemExit) as exit_info:
        tool('deployment/export_onnx.py')([
            config, 'none',
            str(root / 'dcn.onnx'), '--opset', '18', '--cfg-options',
            'model.bbox_head.num_dcn=1'
        ])
    message = str(exit_info.value.code)
    assert 'bbox_head.inter_convs.0.conv' in message
    assert 'opset 19' in message
    assert not osp.exists(root / 'dcn.onnx')


def test_benchmark_times_every_runtime_against_pytorch(tiny, capsys):
    """Each runtime of RUNTIMES in turns with PyTorch, after checking its
    detections, fp32 and (--int8) INT8; one that this installation lacks
    (TensorRT) is skipped, with its reason."""
    config, ckpt, images, root = tiny
    spec = importlib.util.spec_from_file_location(
        'benchmark_onnx', osp.join(REPO, 'tools', 'deployment',
                                   'benchmark_onnx.py'))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    out = str(root / 'bench.json')
    bench.main([config, ckpt, '--repeats', '2', '--threads', '1',
                '--score-thr', '0.05', '0.5', '--image',
                osp.join(images, '0.png'), '--int8', '--out', out])
    text = capsys.readouterr().out
    assert 'ONNX Runtime TensorRT: skipped, device' in text
    with open(out) as f:
        saved = json.load(f)
    # The table as printed, one block per threshold.
    blocks = saved['table'].split('\n\n')
    assert len(blocks) == 2 and all(block in text for block in blocks)
    low, high = saved['results']
    assert (low['score_thr'], high['score_thr']) == (0.05, 0.5)
    assert low['detections'] > high['detections']
    for r in (low, high):
        assert r['input'] == '256x320' and r['repeats'] == 2
        assert list(r['skipped']) == ['ONNX Runtime TensorRT']
        assert 'TensorrtExecutionProvider' in r['skipped'][
            'ONNX Runtime TensorRT']
        assert set(r['runtimes']) == {
            'PyTorch', 'ONNX Runtime', 'OpenVINO', 'ONNX Runtime INT8',
            'OpenVINO INT8'}
        eager, onnx = r['runtimes']['PyTorch'], r['runtimes']['ONNX Runtime']
        assert onnx['same_detections'] and eager['speedup_median'] == 1.0
        assert r['runtimes']['OpenVINO']['same_detections']
        assert eager['repeats'] == onnx['repeats'] == 2
        assert onnx['speedup_min'] <= onnx['speedup_median'] <= \
            onnx['speedup_max']
