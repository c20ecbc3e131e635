"""An .onnx file is checked before a runtime (ONNX Runtime, OpenVINO)
opens it: external data, missing, broken and foreign files are refused by
name."""
import os.path as osp
import runpy

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

from onnx import TensorProto, helper  # noqa: E402

from tood.deployment import (FORMAT, ExportError, OnnxDetector,  # noqa: E402
                             check_onnx_file)

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
SHAPES_CONFIG = osp.join(REPO, 'configs', 'tood',
                         'tood_r18_fpn_11e_shapes.py')
# Everything OnnxDetector reads from the metadata, for a model of one
# class without a stored pipeline.
TOOD_METADATA = {
    'tood.format': FORMAT,
    'tood.with_nms': 'true',
    'tood.test_cfg': '{}',
    'tood.num_classes': '1',
}


def external(name: str, location: str, size: int) -> TensorProto:
    """A uint8 tensor of ``size`` bytes read from ``location``."""
    tensor = TensorProto(name=name, data_type=TensorProto.UINT8, dims=[size])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (('location', location), ('offset', '0'),
                       ('length', str(size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def save(path, nodes, outputs, initializers=(), metadata=TOOD_METADATA):
    graph = helper.make_graph(nodes, 'g', [], outputs, list(initializers))
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 18)])
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return str(path)


def leaky_model(tmp_path, where: str) -> str:
    """A tood-tagged model whose output is the bytes of secret.txt, kept
    as external data in an initializer, a Constant or a subgraph."""
    secret = tmp_path / 'secret.txt'
    secret.write_bytes(b'password=hunter2')
    size = secret.stat().st_size
    out = helper.make_tensor_value_info('leak', TensorProto.UINT8, [size])
    data = external('data', 'secret.txt', size)
    if where == 'initializer':
        return save(tmp_path / 'm.onnx',
                    [helper.make_node('Identity', ['data'], ['leak'])], [out],
                    [data])
    if where == 'constant':
        return save(tmp_path / 'm.onnx',
                    [helper.make_node('Constant', [], ['leak'], value=data)],
                    [out])
    branch = helper.make_graph(
        [helper.make_node('Identity', ['data'], ['b'])], 'branch', [],
        [helper.make_tensor_value_info('b', TensorProto.UINT8, [size])],
        [data])
    cond = helper.make_tensor('cond', TensorProto.BOOL, [], [True])
    return save(tmp_path / 'm.onnx', [
        helper.make_node('If', ['cond'], ['leak'], then_branch=branch,
                         else_branch=branch)
    ], [out], [cond])


@pytest.fixture
def sessions(monkeypatch):
    """Records every file an ONNX Runtime session or OpenVINO reads."""
    created = []
    real = ort.InferenceSession

    def recording(path, *args, **kwargs):
        created.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(ort, 'InferenceSession', recording)
    try:
        import openvino as ov
    except ImportError:
        return created
    read_model = ov.Core.read_model

    def reading(core, path, *args, **kwargs):
        created.append(path)
        return read_model(core, path, *args, **kwargs)

    monkeypatch.setattr(ov.Core, 'read_model', reading)
    return created


@pytest.mark.parametrize('runtime', ['onnxruntime', 'openvino'])
@pytest.mark.parametrize('where', ['initializer', 'constant', 'subgraph'])
def test_external_data_is_refused_before_a_session_exists(
        tmp_path, sessions, where, runtime):
    if runtime == 'openvino':
        pytest.importorskip('openvino')
    path = leaky_model(tmp_path, where)
    with pytest.raises(ExportError) as info:
        OnnxDetector(path, runtime=runtime)
    message = str(info.value)
    assert path in message and 'external data: data' in message
    assert sessions == []


def test_missing_broken_and_foreign_files_are_named(tmp_path, sessions):
    missing = str(tmp_path / 'missing.onnx')
    with pytest.raises(ExportError, match=f'{missing} does not exist'):
        OnnxDetector(missing)
    broken = tmp_path / 'broken.onnx'
    broken.write_bytes(b'\x0a\xff\xff\xff\xff\x0f not protobuf')
    with pytest.raises(ExportError,
                       match=f'{broken} is not an ONNX model: it cannot be '
                       'parsed'):
        OnnxDetector(str(broken))
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])
    foreign = save(tmp_path / 'other.onnx',
                   [helper.make_node('Identity', ['x'], ['y'])],
                   [helper.make_tensor_value_info('y', TensorProto.FLOAT,
                                                  [1])],
                   metadata={})
    with pytest.raises(ExportError, match='other.onnx was not written by '
                       "tood's exporter"):
        check_onnx_file(foreign)
    del x
    assert sessions == []


def infer_main():
    return runpy.run_path(osp.join(REPO, 'tools', 'infer.py'))['main']


@pytest.fixture
def image(tmp_path) -> str:
    path = str(tmp_path / 'images' / 'a.png')
    import os
    os.makedirs(osp.dirname(path))
    cv2.imwrite(path, np.zeros((16, 16, 3), np.uint8))
    return path


def test_infer_ends_with_one_message_for_a_bad_onnx_file(tmp_path, image):
    for name, content in (('missing.onnx', None),
                          ('broken.onnx', b'\x0a\xff\xff\xff\xff\x0f')):
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(SystemExit) as info:
            infer_main()([image, SHAPES_CONFIG, str(path), '--out-dir',
                          str(tmp_path / 'out')])
        assert str(path) in str(info.value.code)
    path = leaky_model(tmp_path, 'initializer')
    with pytest.raises(SystemExit, match='external data'):
        infer_main()([image, SHAPES_CONFIG, path, '--out-dir',
                      str(tmp_path / 'out')])
    assert not (tmp_path / 'out').exists()
