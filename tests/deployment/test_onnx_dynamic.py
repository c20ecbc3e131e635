"""One export with dynamic shapes, checked at several batch and image
sizes and on real photographs through the inference API.

Marked e2e: exporting with dynamic shapes traces symbolic sizes through
every layer, 1-3 minutes for this tiny model on two shared cores.
"""
import pytest

pytest.importorskip('onnx')
pytest.importorskip('onnxscript')
pytest.importorskip('onnxruntime')

from onnx_helpers import (build_model, coco_photos,  # noqa: E402
                          graph_detections, random_images,
                          reference_detections, session, tiny_config)

from tood.apis import inference_detector  # noqa: E402
from tood.deployment import (Detections, OnnxDetector,  # noqa: E402
                             compare_detections, export_onnx)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """A tiny 80-class TOOD and its dynamic-shape export."""
    model = build_model(tiny_config())
    path = str(tmp_path_factory.mktemp('onnx') / 'dynamic.onnx')
    export_onnx(
        model,
        path,
        shape=(256, 320),
        dynamic=True,
        dataset_meta=model.dataset_meta)
    return model, path


def test_any_batch_and_image_size(exported):
    """Sizes that are not multiples of the size divisor, a batch of two
    with different scale factors, and inputs small enough that the
    coarsest levels are 1x1."""
    model, path = exported
    sess = session(path)
    assert sess.get_inputs()[0].shape == ['batch', 'height', 'width', 3]
    assert sess.get_outputs()[1].shape == ['batch', 60, 4]
    for i, (batch, h, w) in enumerate([(1, 256, 320), (2, 200, 333),
                                       (1, 97, 64), (1, 480, 160)]):
        images = random_images(batch, h, w, seed=10 + i)
        scales = [(1.0 + 0.1 * b, 1.2 - 0.1 * b) for b in range(batch)]
        oris = [(h / s[1], w / s[0]) for s in scales]
        refs = reference_detections(model, images, scales, oris)
        tests = graph_detections(sess, images, scales, oris)
        for b, (ref, test) in enumerate(zip(refs, tests)):
            result = compare_detections(ref, test)
            assert result.ok, f'{batch}x{h}x{w}, image {b}: ' \
                f'{result.summary()}'
            assert len(ref) > 0


def test_real_photographs_through_the_inference_api(exported):
    """coco128 photographs, resized by the config's pipeline to different
    sizes, give the same detections through OnnxDetector as through the
    PyTorch model, with inference_detector for both."""
    model, path = exported
    photos = coco_photos(4)
    detector = OnnxDetector(path, model.cfg, num_threads=1)
    sizes = set()
    for photo in photos:
        ref = inference_detector(model, photo)
        test = inference_detector(detector, photo)
        sizes.add(tuple(ref.metainfo['img_shape'][:2]))
        assert test.metainfo['ori_shape'] == ref.metainfo['ori_shape']
        result = compare_detections(
            Detections.from_instances(ref.pred_instances),
            Detections.from_instances(test.pred_instances))
        assert result.ok, f'{photo}: {result.summary()}'
        assert len(ref.pred_instances) > 0
        assert sorted(test.pred_instances.class_names) == sorted(
            ref.pred_instances.class_names)
    assert len(sizes) > 1, 'the photographs should need several sizes'
