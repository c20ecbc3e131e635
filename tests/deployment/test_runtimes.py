"""OpenVINO as a second runtime of the exports: PyTorch's detections within
the documented tolerances (paired by box), through the same OnnxDetector
and inference API as ONNX Runtime."""
import pytest

pytest.importorskip('onnx')
pytest.importorskip('onnxscript')
pytest.importorskip('onnxruntime')
ov = pytest.importorskip('openvino')

from mmengine.config import Config  # noqa: E402
from onnx_helpers import (SHAPES_CONFIG,  # noqa: E402
                          assert_same_detections, build_model, coco_photos,
                          shapes_val_images, tiny_config)

from tood.deployment import (ExportError, OnnxDetector,  # noqa: E402
                             export_onnx)

# Exports of their own: seconds to a minute each.
pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def shapes_export(tmp_path_factory):
    """The main job's model (untrained, head spread), static 256x256."""
    root = tmp_path_factory.mktemp('shapes')
    model = build_model(Config.fromfile(SHAPES_CONFIG))
    path = export_onnx(model, str(root / 'shapes.onnx'), shape=(256, 256),
                       dataset_meta=model.dataset_meta)
    return model, path, shapes_val_images(str(root), 3)


def test_openvino_gives_pytorchs_detections_on_shapes_images(
        shapes_export):
    model, path, images = shapes_export
    detector = OnnxDetector(path, model.cfg, num_threads=1,
                            runtime='openvino')
    assert detector.runtime.name == 'openvino'
    assert_same_detections(model, detector, images)


def test_openvino_runs_float_layers_in_float32(shapes_export):
    """Left to itself, OpenVINO's CPU plugin picks bfloat16 on CPUs that
    have it (this project's machine does), which is not the exported
    model; the runtime asks for float32."""
    _, path, _ = shapes_export
    detector = OnnxDetector(path, SHAPES_CONFIG, num_threads=1,
                            runtime='openvino')
    hint = detector.runtime.compiled.get_property('INFERENCE_PRECISION_HINT')
    assert hint == ov.Type.f32


def test_openvino_on_the_cpu_only(shapes_export):
    _, path, _ = shapes_export
    with pytest.raises(ExportError, match="runs on the CPU.*'cuda'"):
        OnnxDetector(path, SHAPES_CONFIG, device='cuda', runtime='openvino')
    with pytest.raises(ExportError, match="unknown runtime 'tensorrt'"):
        OnnxDetector(path, SHAPES_CONFIG, runtime='tensorrt')


def test_openvino_dynamic_export_on_coco_photographs(tmp_path):
    """A dynamic export of a COCO-sized TOOD (80 classes, five levels) on
    real photographs of different sizes: OpenVINO's NonMaxSuppression and
    GridSample give PyTorch's detections."""
    photos = coco_photos(3)
    model = build_model(tiny_config())
    path = export_onnx(model, str(tmp_path / 'coco.onnx'), shape=(256, 320),
                       dynamic=True, dataset_meta=model.dataset_meta)
    detector = OnnxDetector(path, model.cfg, num_threads=1,
                            runtime='openvino')
    assert detector.input_hw == (None, None)
    assert_same_detections(model, detector, photos)


def test_openvino_refuses_deformable_convolutions_by_name(tmp_path):
    """OpenVINO's ONNX reader has no DeformConv: the DCNv2 models are
    refused before it reads the file, with the runtime that runs them."""
    model = build_model(tiny_config(**{'model.bbox_head.num_dcn': 1}))
    path = export_onnx(model, str(tmp_path / 'dcn.onnx'), shape=(256, 320),
                       dataset_meta=model.dataset_meta)
    with pytest.raises(ExportError, match='DeformConv.*openvino runtime '
                       'cannot read.*--runtime onnxruntime'):
        OnnxDetector(path, model.cfg, runtime='openvino')
    OnnxDetector(path, model.cfg, num_threads=1)
