import pytest
import torch
from mmengine.structures import InstanceData

from tood.registry import MODELS
from tood.structures import DetDataSample


def tiny_tood(anchor_type='anchor_free'):
    return dict(
        type='TOOD',
        data_preprocessor=dict(
            type='DetDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_size_divisor=32),
        backbone=dict(
            type='ResNet', depth=18, out_indices=(1, 2, 3), norm_eval=False),
        neck=dict(
            type='FPN',
            in_channels=[128, 256, 512],
            out_channels=32,
            add_extra_convs='on_output',
            num_outs=5),
        bbox_head=dict(
            type='TOODHead',
            num_classes=3,
            in_channels=32,
            feat_channels=32,
            stacked_convs=2,
            anchor_type=anchor_type,
            norm_cfg=dict(type='GN', num_groups=8, requires_grad=True)),
        train_cfg=dict(
            initial_epoch=1,
            initial_assigner=dict(type='ATSSAssigner', topk=9),
            assigner=dict(type='TaskAlignedAssigner', topk=13),
            alpha=1,
            beta=6),
        test_cfg=dict(
            nms_pre=1000,
            score_thr=0.05,
            nms=dict(type='nms', iou_threshold=0.6),
            max_per_img=100))


def batch():
    shapes = [(96, 128), (80, 100)]
    inputs, data_samples = [], []
    for i, (h, w) in enumerate(shapes):
        inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8))
        s = DetDataSample(
            metainfo=dict(img_shape=(h, w), ori_shape=(2 * h, 2 * w),
                          scale_factor=(0.5, 0.5)))
        boxes = torch.tensor([[10.0, 12.0, 60.0, 70.0],
                              [40.0, 20.0, 90.0, 50.0]])[:2 - i]
        s.gt_instances = InstanceData(
            bboxes=boxes, labels=torch.tensor([0, 2])[:2 - i])
        data_samples.append(s)
    return dict(inputs=inputs, data_samples=data_samples)


def test_data_preprocessor_pads_and_records_shapes():
    model = MODELS.build(tiny_tood())
    data = model.data_preprocessor(batch(), True)
    assert data['inputs'].shape == (2, 3, 96, 128)
    assert data['inputs'].dtype == torch.float32
    s0, s1 = data['data_samples']
    assert s0.batch_input_shape == s1.batch_input_shape == (96, 128)
    assert s0.pad_shape == (96, 128)
    assert s1.pad_shape == (96, 128)  # 80 x 100 rounded up to 32
    # BGR -> RGB, then normalised: output channel 0 is input channel 2
    image = torch.randint(0, 256, (3, 80, 100), dtype=torch.uint8)
    out = model.data_preprocessor(dict(inputs=[image], data_samples=None),
                                  False)['inputs']
    assert out.shape == (1, 3, 96, 128)
    torch.testing.assert_close(out[0, 0, :80, :100],
                               (image[2].float() - 123.675) / 58.395)
    assert (out[0, :, 80:, :] == 0).all()  # padding value 0


@pytest.mark.e2e
def test_channels_last_changes_memory_order_not_results(set_epoch):
    torch.manual_seed(0)
    nchw = MODELS.build(tiny_tood('anchor_based'))
    nchw.init_weights()
    nhwc = MODELS.build(dict(tiny_tood('anchor_based'), channels_last=True))
    nhwc.init_weights()
    nhwc.load_state_dict(nchw.state_dict())
    # The backbone and neck stay NHWC through init and loading; the head
    # keeps NCHW weights and gets NCHW maps.
    cl = torch.channels_last
    assert nhwc.backbone.conv1.weight.is_contiguous(memory_format=cl)
    assert nhwc.neck.fpn_convs[0].conv.weight.is_contiguous(memory_format=cl)
    assert not nchw.backbone.conv1.weight.is_contiguous(memory_format=cl)
    assert nhwc.bbox_head.tood_cls.weight.is_contiguous()
    torch.manual_seed(1)
    data = batch()
    inputs = nhwc.data_preprocessor(data, True)['inputs']
    seen = []
    nhwc.bbox_head.register_forward_pre_hook(
        lambda module, args: seen.extend(args[0]))
    nhwc(inputs, mode='tensor')
    assert len(seen) == 5 and all(f.is_contiguous() for f in seen)
    set_epoch(1)
    ref = nchw(**nchw.data_preprocessor(data, True), mode='loss')
    out = nhwc(**nhwc.data_preprocessor(data, True), mode='loss')
    for key in ref:
        torch.testing.assert_close(out[key], ref[key], rtol=1e-4, atol=1e-5)
    ref['loss_bbox'].backward()
    out['loss_bbox'].backward()
    # Summed in another order by the NHWC kernels: at one thread the first
    # conv's gradients differ by up to 4e-5.
    torch.testing.assert_close(nhwc.backbone.conv1.weight.grad,
                               nchw.backbone.conv1.weight.grad,
                               rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize('anchor_type', ['anchor_free', 'anchor_based'])
def test_forward_modes(anchor_type, set_epoch):
    model = MODELS.build(tiny_tood(anchor_type))
    model.init_weights()
    data = model.data_preprocessor(batch(), True)
    for epoch in (0, 1):
        set_epoch(epoch)
        losses = model(**data, mode='loss')
        assert set(losses) == {'loss_cls', 'loss_bbox'}
        assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    cls_scores, bbox_preds = model(data['inputs'], mode='tensor')
    assert [c.shape[-2:] for c in cls_scores] == [(12, 16), (6, 8), (3, 4),
                                                 (2, 2), (1, 1)]
    model.eval()
    with torch.no_grad():
        model.bbox_head.tood_cls.bias.fill_(4.0)
        out = model(**model.data_preprocessor(batch(), False),
                    mode='predict')
    assert len(out) == 2
    pred = out[0].pred_instances
    assert len(pred) > 0
    # rescaled to the original (twice as large) image and clipped to it
    assert pred.bboxes[:, 2].max() <= 256 and pred.bboxes[:, 3].max() <= 192
    assert pred.bboxes.max() > 128


@pytest.mark.e2e
def test_train_step_reduces_loss(set_epoch):
    torch.manual_seed(0)
    model = MODELS.build(tiny_tood())
    model.init_weights()
    set_epoch(5)
    optim = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    data = batch()
    first = None
    for _ in range(8):
        losses = model(**model.data_preprocessor(data, True), mode='loss')
        loss = sum(losses.values())
        first = first if first is not None else loss.item()
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert loss.item() < first


def test_bf16_autocast_keeps_losses_finite(set_epoch):
    model = MODELS.build(tiny_tood())
    model.init_weights()
    data = model.data_preprocessor(batch(), True)
    for epoch in (0, 1):
        set_epoch(epoch)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            losses = model(**data, mode='loss')
        for v in losses.values():
            assert v.dtype == torch.float32 and torch.isfinite(v)
        sum(losses.values()).backward()


@pytest.mark.parametrize('config, epoch', [
    ('configs/tood/tood_r50_fpn_1x_coco.py', 4),
    ('configs/tood/tood_r50_fpn_anchor-based_1x_coco.py', 0),
])
def test_published_config_runs_loss_and_predict(config, epoch, set_epoch):
    """The paper-size model from its config: loss and predict on CPU."""
    import os.path as osp

    from mmengine.config import Config
    root = osp.dirname(osp.dirname(osp.dirname(osp.dirname(__file__))))
    cfg = Config.fromfile(osp.join(root, config))
    cfg.model.backbone.init_cfg = None  # no download
    model = MODELS.build(cfg.model)
    model.init_weights()
    n_all = sum(p.numel() for p in model.parameters())
    n_head = sum(p.numel() for p in model.bbox_head.parameters())
    assert 32.0e6 < n_all < 32.4e6  # about 32.2 M
    assert 4.80e6 < n_head < 4.84e6  # about 4.82 M
    data = model.data_preprocessor(batch(), True)
    for s in data['data_samples']:
        s.gt_instances.labels = s.gt_instances.labels + 70
    set_epoch(epoch)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model(**model.data_preprocessor(batch(), False),
                    mode='predict')
    assert len(out) == 2 and 'bboxes' in out[0].pred_instances
