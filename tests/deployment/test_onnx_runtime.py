"""OnnxDetector: an exported model behind the inference API, on the main
job's architecture and shapes val images."""
import numpy as np
import pytest

pytest.importorskip('onnx')
pytest.importorskip('onnxscript')
pytest.importorskip('onnxruntime')

from mmengine.config import Config  # noqa: E402
from onnx_helpers import (SHAPES_CONFIG,  # noqa: E402
                          assert_same_detections, build_model,
                          shapes_val_images, write_checkpoint)

from tood.apis import inference_detector  # noqa: E402
from tood.deployment import (ExportError, OnnxDetector,  # noqa: E402
                             export_config)

# Trainings, exports or tools in their own processes: seconds to
# minutes each (pytest -m "not e2e" leaves them out).
pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def shapes_export(tmp_path_factory):
    """The main job's model (untrained, head spread) exported through
    export_config from a checkpoint, at the shapes' 256x256."""
    root = tmp_path_factory.mktemp('shapes')
    model = build_model(Config.fromfile(SHAPES_CONFIG))
    ckpt = write_checkpoint(model, str(root / 'shapes.pth'))
    path = export_config(SHAPES_CONFIG, ckpt, str(root / 'shapes.onnx'))
    images = shapes_val_images(str(root), 4)
    return model, path, images


def test_shapes_val_images_without_a_config(shapes_export):
    """The exported file alone (pipeline and classes in its metadata) gives
    PyTorch's detections on shapes val images."""
    model, path, images = shapes_export
    detector = OnnxDetector(path, num_threads=1)
    assert detector.input_hw == (256, 256)
    assert detector.dataset_meta['classes'] == model.dataset_meta['classes']
    assert_same_detections(model, detector, images)


def test_wrong_size_for_a_static_export(shapes_export):
    _, path, _ = shapes_export
    detector = OnnxDetector(path, num_threads=1)
    image = np.zeros((200, 256, 3), np.uint8)
    with pytest.raises(ValueError, match='256x256.*200x256.*--dynamic'):
        inference_detector(detector, image)


def test_config_must_match_the_export(shapes_export):
    _, path, _ = shapes_export
    with pytest.raises(ExportError, match='score_thr: exported 0.05, '
                       'config 0.5.*--no-nms'):
        OnnxDetector(
            path,
            SHAPES_CONFIG,
            cfg_options={'model.test_cfg.score_thr': 0.5})
    with pytest.raises(ExportError, match='8 classes, the config 3'):
        OnnxDetector(
            path,
            SHAPES_CONFIG,
            cfg_options={'model.bbox_head.num_classes': 3})


def test_not_a_tood_export(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node('Identity', ['x'], ['y'])],
                              'g', [x], [y])
    onnx.save(helper.make_model(graph), str(tmp_path / 'other.onnx'))
    with pytest.raises(ExportError, match='not written by tood'):
        OnnxDetector(str(tmp_path / 'other.onnx'))
