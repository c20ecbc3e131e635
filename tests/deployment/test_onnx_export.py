"""Export tiny detectors to ONNX and check ONNX Runtime against PyTorch
(static shapes; test_onnx_dynamic.py has the dynamic ones).

Every exported graph passes ``onnx.checker`` (full check) and gives the
PyTorch model's detections: the same number, paired one-to-one with the
same label, boxes within 0.01 px and scores within 1e-4 (``Comparison``).
"""
import json

import numpy as np
import pytest
import torch

pytest.importorskip('onnx')
pytest.importorskip('onnxscript')
pytest.importorskip('onnxruntime')

import onnx  # noqa: E402
from onnx_helpers import (build_model, graph_detections,  # noqa: E402
                          random_images, reference_detections, session,
                          tiny_config)

from tood.apis import inference_detector  # noqa: E402
from tood.deployment import (DEFORM_CONV_OPSET, FORMAT,  # noqa: E402
                             Detections, ExportError, OnnxDetector,
                             compare_detections,
                             custom_translations, deformable_modules,
                             export_onnx, resolve_opset)

# Trainings, exports or tools in their own processes: seconds to
# minutes each (pytest -m "not e2e" leaves them out).
pytestmark = pytest.mark.e2e


def assert_same(refs, tests) -> None:
    for i, (ref, test) in enumerate(zip(refs, tests)):
        result = compare_detections(ref, test)
        assert result.ok, f'image {i}: {result.summary()}'
        assert len(ref) > 0, 'nothing detected: the check would be empty'


def export_and_check(model, path, shape, **kwargs) -> str:
    export_onnx(model, str(path), shape=shape, **kwargs)
    onnx.checker.check_model(str(path), full_check=True)
    return str(path)


# Scale factors other than 1 and original sizes that clip some boxes.
SCALE = [(1.25, 0.8)]
ORI = [(256 / 0.8, 320 / 1.25 - 20)]


@pytest.mark.parametrize('anchor_type', ['anchor_free', 'anchor_based'])
def test_export_matches_pytorch(anchor_type, tmp_path):
    model = build_model(
        tiny_config(**{'model.bbox_head.anchor_type': anchor_type}))
    path = export_and_check(
        model, tmp_path / 'm.onnx', (256, 320),
        dataset_meta=model.dataset_meta)

    proto = onnx.load(path)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta['tood.format'] == FORMAT
    assert json.loads(meta['tood.test_cfg'])['max_per_img'] == 60
    assert len(json.loads(meta['tood.classes'])) == 80
    ops = {n.op_type for n in proto.graph.node}
    assert 'NonMaxSuppression' in ops and 'GridSample' in ops

    sess = session(path)
    assert [i.name for i in sess.get_inputs()] == [
        'image', 'scale_factor', 'ori_shape'
    ]
    assert [o.name for o in sess.get_outputs()] == [
        'num_detections', 'boxes', 'scores', 'labels'
    ]
    images = random_images(1, 256, 320)
    assert_same(
        reference_detections(model, images, SCALE, ORI),
        graph_detections(sess, images, SCALE, ORI))


def test_padding_rows_of_the_output(tmp_path):
    """A static export takes its size only; rows past num_detections are
    padding: score 0, label -1, box 0."""
    model = build_model(
        tiny_config(**{
            'model.test_cfg.score_thr': 0.15,
            'model.test_cfg.max_per_img': 200
        }))
    path = export_and_check(model, tmp_path / 'm.onnx', (128, 160))
    sess = session(path)
    assert sess.get_inputs()[0].shape == [1, 128, 160, 3], 'static'
    images = random_images(1, 128, 160, seed=3)
    num, boxes, scores, labels = sess.run(
        None,
        dict(
            image=images,
            scale_factor=np.ones((1, 2), np.float32),
            ori_shape=np.array([[128, 160]], np.float32)))
    n = int(num[0])
    assert 0 < n < 200
    assert (scores[0, n:] == 0).all() and (labels[0, n:] == -1).all()
    assert (boxes[0, n:] == 0).all()
    assert (np.diff(scores[0, :n]) <= 0).all(), 'best first'
    ref = reference_detections(model, images, [(1, 1)], [(128, 160)])[0]
    assert len(ref) == n


def test_ablation_switches_export(tmp_path):
    """The T-Head without layer attention, probability map and offset
    sampling (the paper's ablations) exports; so does the parallel head."""
    model = build_model(
        tiny_config(
            **{
                'model.bbox_head.use_layer_attention': False,
                'model.bbox_head.use_cls_prob': False,
                'model.bbox_head.use_reg_offset': False,
            }))
    path = export_and_check(model, tmp_path / 'ablation.onnx', (256, 320))
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert 'GridSample' not in ops, 'no offset sampling to export'
    images = random_images(1, 256, 320, seed=1)
    assert_same(
        reference_detections(model, images, SCALE, ORI),
        graph_detections(session(path), images, SCALE, ORI))


def test_parallel_head_exports(tmp_path):
    cfg = tiny_config()
    head = cfg.model.bbox_head
    cfg.model.bbox_head = dict(
        type='ParallelHead',
        num_classes=head.num_classes,
        in_channels=head.in_channels,
        feat_channels=head.feat_channels,
        stacked_convs=2,
        anchor_type='anchor_free',
        strides=head.strides,
        norm_cfg=head.norm_cfg)
    model = build_model(cfg)
    path = export_and_check(model, tmp_path / 'parallel.onnx', (256, 320))
    images = random_images(1, 256, 320, seed=2)
    assert_same(
        reference_detections(model, images, SCALE, ORI),
        graph_detections(session(path), images, SCALE, ORI))


def test_no_nms_graph_finished_by_select_detections(tmp_path):
    """Per-prior outputs finished by the post-processing that the NMS graph
    traces give PyTorch's detections; run through OnnxDetector, the
    post-processing takes the settings of the config given at load time."""
    cfg = tiny_config()
    model = build_model(cfg)
    path = export_and_check(
        model, tmp_path / 'raw.onnx', (256, 320), with_nms=False)
    sess = session(path)
    assert [o.name for o in sess.get_outputs()] == [
        'scores', 'boxes', 'priors_per_level'
    ]
    images = random_images(1, 256, 320, seed=4)
    scores, boxes, per_level = sess.run(
        None,
        dict(
            image=images,
            scale_factor=np.asarray(SCALE, np.float32),
            ori_shape=np.asarray(ORI, np.float32)))
    # 256x320 input: levels of stride 8..128.
    assert per_level.tolist() == [32 * 40, 16 * 20, 8 * 10, 4 * 5, 2 * 3]
    assert scores.shape == (1, sum(per_level), 80)
    assert boxes.shape == (1, sum(per_level), 4)
    ref = reference_detections(model, images, SCALE, ORI)
    test_cfg = model.bbox_head.test_cfg.to_config()
    assert_same(ref,
                graph_detections(sess, images, SCALE, ORI, test_cfg=test_cfg))

    # The config's Resize fits images into 320x256 (W x H): this one keeps
    # its size, which the static graph takes.
    image = random_images(1, 256, 320, seed=7)[0]
    strict = OnnxDetector(path, cfg, num_threads=1)
    assert not strict.with_nms
    ref = inference_detector(model, image)
    test = inference_detector(strict, image)
    assert compare_detections(
        Detections.from_instances(ref.pred_instances),
        Detections.from_instances(test.pred_instances)).ok
    loose = OnnxDetector(
        path,
        cfg,
        cfg_options={'model.test_cfg.score_thr': 0.15},
        num_threads=1)
    fewer = inference_detector(loose, image).pred_instances
    assert 0 < len(fewer) < len(ref.pred_instances)
    assert (fewer.scores > 0.15).all()


# --------------------------------------------------------------------- #
# Deformable convolutions
# --------------------------------------------------------------------- #
def test_deform_conv_translation_matches_torchvision(tmp_path):
    """DCNv2 as ONNX DeformConv (opset 19) gives torchvision's values, with
    a stride, offset groups and large offsets."""
    from tood.models.layers import ModulatedDeformConv2d
    torch.manual_seed(0)
    layer = ModulatedDeformConv2d(
        8, 6, 3, stride=2, padding=1, deform_groups=2).eval()
    torch.nn.init.normal_(layer.conv_offset.weight, std=0.3)
    torch.nn.init.normal_(layer.conv_offset.bias, std=2.0)
    x = torch.randn(2, 8, 11, 13)
    program = torch.onnx.export(
        layer, (x, ),
        dynamo=True,
        opset_version=DEFORM_CONV_OPSET,
        custom_translation_table=custom_translations())
    program.save(str(tmp_path / 'dcn.onnx'))
    onnx.checker.check_model(str(tmp_path / 'dcn.onnx'), full_check=True)
    assert 'DeformConv' in {
        n.op_type
        for n in onnx.load(str(tmp_path / 'dcn.onnx')).graph.node
    }
    (out, ) = session(str(tmp_path / 'dcn.onnx')).run(None, {
        'x': x.numpy()
    })
    with torch.no_grad():
        ref = layer(x).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_dcn_head_exports_at_opset_19(tmp_path):
    model = build_model(tiny_config(**{'model.bbox_head.num_dcn': 1}))
    assert deformable_modules(model) == ['bbox_head.inter_convs.0.conv']
    assert resolve_opset(model, None) == DEFORM_CONV_OPSET
    path = export_and_check(model, tmp_path / 'dcn.onnx', (256, 320))
    assert onnx.load(path).opset_import[0].version >= DEFORM_CONV_OPSET
    images = random_images(1, 256, 320, seed=5)
    assert_same(
        reference_detections(model, images, SCALE, ORI),
        graph_detections(session(path), images, SCALE, ORI))


def test_dcn_refused_below_opset_19(tmp_path):
    model = build_model(tiny_config(**{'model.bbox_head.num_dcn': 1}))
    with pytest.raises(ExportError, match=r'bbox_head\.inter_convs\.0\.conv'
                       r'.*opset 19'):
        export_onnx(model, str(tmp_path / 'x.onnx'), (128, 160), opset=18)
    assert not (tmp_path / 'x.onnx').exists()


def test_old_opset_refused(tmp_path):
    model = build_model(tiny_config())
    with pytest.raises(ExportError, match='opset 16'):
        export_onnx(model, str(tmp_path / 'x.onnx'), (128, 160), opset=15)


@pytest.mark.parametrize('head_type', ['ATSSHead', 'GFLHead'])
def test_baseline_heads_export(head_type, tmp_path):
    """Every head exports through its criterion's predictions: ATSS with
    its centerness as score factor (a fourth output without NMS), GFL with
    its expected side distances."""
    cfg = tiny_config()
    head = cfg.model.bbox_head
    cfg.model.bbox_head = dict(
        type=head_type, num_classes=head.num_classes,
        in_channels=head.in_channels, feat_channels=head.feat_channels,
        stacked_convs=2, strides=head.strides, norm_cfg=head.norm_cfg)
    cfg.model.train_cfg = dict(assigner=dict(type='ATSSAssigner', topk=9))
    model = build_model(cfg)
    images = random_images(1, 256, 320, seed=5)
    ref = reference_detections(model, images, SCALE, ORI)
    path = export_and_check(model, tmp_path / 'nms.onnx', (256, 320))
    assert_same(ref, graph_detections(session(path), images, SCALE, ORI))
    raw = export_and_check(model, tmp_path / 'raw.onnx', (256, 320),
                           with_nms=False)
    outputs = [o.name for o in session(raw).get_outputs()]
    assert outputs == ['scores', 'boxes', 'priors_per_level'] + (
        ['score_factors'] if head_type == 'ATSSHead' else [])
    assert_same(ref, graph_detections(session(raw), images, SCALE, ORI,
                                      test_cfg=model.bbox_head.test_cfg.
                                      to_config()))
