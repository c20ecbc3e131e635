"""Our TOOD against MMDetection 3.3.0's own numbers.

``tests/data/parity/mmdet-3.3.0-tood-reference.pt`` (see the README next to
it) holds what MMDetection 3.3.0 computed for a narrow TOOD from fixed
weights and inputs, for both anchor types, and assignment cases for both
assigners. Every item is compared here:

- the weights load through our MMDetection converter with a strict load;
- the preprocessed inputs are equal;
- FPN levels, head outputs, losses at epoch 0 (ATSS warm-up) and 5 (TAL),
  their gradients and the detections agree within ``REL`` of each tensor's
  largest magnitude (float reordering moves the last digits, a change of
  meaning moves far more);
- assignments are identical, and the TAL targets agree within ``REL``.

MMDetection 3.3's own detections without clipping to the image
(``detections_mmdet_unclipped``) are in the file for the record only: we
clip before NMS, as the official TOOD code does.
"""
import copy
import os.path as osp
from typing import Dict, List, Tuple

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from tood.model_converters import convert_tood_state_dict
from tood.models.task_modules import Priors
from tood.registry import MODELS, TASK_UTILS
from tood.structures import DetDataSample, PaddedGT

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
REFERENCE = osp.join(ROOT, 'tests', 'data', 'parity',
                     'mmdet-3.3.0-tood-reference.pt')
CONFIG = osp.join(ROOT, 'configs', 'tood', 'tood_r50_fpn_1x_coco.py')
# Largest difference allowed, relative to the reference's largest value.
REL = 1e-5
ANCHOR_TYPES = ('anchor_free', 'anchor_based')


@pytest.fixture(scope='module', autouse=True)
def tood_scope():
    """Build in the tood scope whatever scope an earlier test's runner left
    current."""
    with DefaultScope.overwrite_default_scope('tood'):
        yield


@pytest.fixture(scope='module')
def reference() -> dict:
    return torch.load(REFERENCE, weights_only=True)


def entry(reference: dict, anchor_type: str) -> dict:
    (found, ) = [m for m in reference['models']
                 if m['anchor_type'] == anchor_type]
    return found


def assert_close(actual: torch.Tensor, expected: torch.Tensor,
                 what: str) -> None:
    assert actual.shape == expected.shape, what
    scale = expected.abs().max().item() if expected.numel() else 0.0
    diff = (actual.float() - expected.float()).abs().max().item() \
        if expected.numel() else 0.0
    assert diff <= REL * max(scale, 1e-12), (
        f'{what}: max difference {diff:.3g} over a largest value of '
        f'{scale:.3g} (allowed {REL:g} of it)')


def set_epoch(model: torch.nn.Module, epoch: int) -> None:
    """What a runner's train loop tells the model at ``epoch``, through
    mmengine's message hub."""
    hub = MessageHub.get_current_instance()
    hub.update_info('epoch', epoch)
    hub.update_info('iter', epoch * 100)
    hub.update_info('max_epochs', 12)


def build_model(item: dict) -> torch.nn.Module:
    cfg = copy.deepcopy(Config.fromfile(CONFIG).model.to_dict())
    for part, overrides in item['mmdet_model_overrides'].items():
        cfg[part].update(copy.deepcopy(overrides))
    cfg['bbox_head']['anchor_type'] = item['anchor_type']
    # Everything as in test_cfg, except that every score counts.
    cfg['test_cfg']['score_thr'] = 0.0
    model = MODELS.build(cfg)
    state_dict = convert_tood_state_dict(item['state_dict'], 'mmdet3')
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


@pytest.fixture(scope='module', params=ANCHOR_TYPES)
def case(request, reference):
    item = entry(reference, request.param)
    return item, build_model(item)


def data_samples(item: dict) -> List[DetDataSample]:
    """The two images' samples as the data preprocessor leaves them
    (``pad_shape``, ``batch_input_shape``), with their GTs."""
    samples = []
    for (h, w), boxes, labels in zip(item['image_shapes'], item['gt_bboxes'],
                                     item['gt_labels']):
        sample = DetDataSample(
            metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                          scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(bboxes=boxes, labels=labels)
        samples.append(sample)
    preprocessor = MODELS.build(
        dict(type='DetDataPreprocessor', pad_size_divisor=32))
    return preprocessor(
        dict(inputs=list(item['images_uint8_chw']), data_samples=samples),
        True)['data_samples']


def test_weights_load_strictly_through_the_converter(case):
    item, model = case
    ours = model.state_dict()
    converted = convert_tood_state_dict(item['state_dict'], 'mmdet3')
    assert set(ours) == set(converted)
    for key, value in converted.items():
        assert torch.equal(ours[key], value), key


def test_preprocessed_inputs_are_equal(case):
    item, model = case
    data = model.data_preprocessor(
        dict(inputs=list(item['images_uint8_chw']), data_samples=None),
        False)
    assert torch.equal(data['inputs'], item['normalized_inputs'])


@torch.no_grad()
def test_fpn_levels(case):
    item, model = case
    levels = model.extract_feat(item['normalized_inputs'])
    assert len(levels) == len(item['fpn'])
    for i, (ours, theirs) in enumerate(zip(levels, item['fpn'])):
        assert_close(ours, theirs, f'FPN level {i}')


@torch.no_grad()
def test_head_outputs(case):
    item, model = case
    cls_scores, bbox_preds = model.bbox_head(item['fpn'])
    for i in range(len(item['fpn'])):
        assert_close(cls_scores[i], item['cls_scores'][i],
                     f'cls_scores level {i}')
        assert_close(bbox_preds[i], item['bbox_preds'][i],
                     f'bbox_preds level {i}')


@pytest.mark.parametrize('epoch', [0, 5])
def test_losses_and_gradients(case, epoch):
    item, model = case
    cls_scores = [s.clone().requires_grad_() for s in item['cls_scores']]
    bbox_preds = [b.clone().requires_grad_() for b in item['bbox_preds']]
    set_epoch(model, epoch)
    losses: Dict[str, torch.Tensor] = model.bbox_head.loss_by_feat(
        cls_scores, bbox_preds, data_samples(item))
    expected = item['losses'][epoch]
    assert set(losses) == set(expected)
    for name, value in expected.items():
        assert abs(losses[name].item() - value) <= REL * abs(value), (
            f'{name} at epoch {epoch}: {losses[name].item()} vs {value}')
    sum(losses.values()).backward()
    grads = item['loss_grads'][epoch]
    for i in range(len(cls_scores)):
        assert_close(cls_scores[i].grad, grads['cls_scores'][i],
                     f'd loss / d cls_scores level {i}, epoch {epoch}')
        assert_close(bbox_preds[i].grad, grads['bbox_preds'][i],
                     f'd loss / d bbox_preds level {i}, epoch {epoch}')


@torch.no_grad()
def test_detections(case):
    item, model = case
    metas = [s.metainfo for s in data_samples(item)]
    results = model.bbox_head.predict_by_feat(
        item['cls_scores'], item['bbox_preds'], metas, rescale=True)
    for i, (ours, theirs) in enumerate(zip(results, item['detections'])):
        assert torch.equal(ours.labels, theirs['labels']), f'image {i}'
        assert_close(ours.scores, theirs['scores'], f'scores of image {i}')
        assert_close(ours.bboxes, theirs['bboxes'], f'boxes of image {i}')


def one_image(case: dict) -> Tuple[Priors, PaddedGT]:
    """An assignment case as a batch of one image."""
    anchors = case['priors']  # (N, 4) squares of side 8 s around the points
    points = (anchors[:, :2] + anchors[:, 2:]) / 2
    strides = (anchors[:, 2] - anchors[:, 0]) / 8
    # The levels' (H, W) only count their priors here.
    sizes = tuple((1, n) for n in case['num_level_priors'])
    priors = Priors(points, strides, anchors, sizes,
                    torch.ones((1, anchors.size(0)), dtype=torch.bool))
    labels = case['gt_labels'][None]
    gt = PaddedGT(case['gt_bboxes'][None], labels,
                  torch.ones(labels.shape, dtype=torch.bool))
    return priors, gt


def assign_tal(case: dict) -> dict:
    priors, gt = one_image(case)
    assigner = TASK_UTILS.build(
        dict(type='TaskAlignedAssigner', topk=13, alpha=1, beta=6))
    result = assigner.assign(priors, gt, case['pred_scores'][None],
                             case['pred_bboxes'][None])
    return dict(gt_index=result.gt_index[0], overlaps=result.overlaps[0],
                metrics=result.metrics[0])


def assign_atss(case: dict) -> torch.Tensor:
    priors, gt = one_image(case)
    assigner = TASK_UTILS.build(dict(type='ATSSAssigner', topk=9))
    return assigner.assign(priors, gt).gt_index[0]


@pytest.mark.parametrize('index', range(5))
def test_task_aligned_assignment(reference, index):
    case = reference['assign'][index]
    result = assign_tal(case)
    expected_gt = case['tal_gt_inds'] - 1  # -1 background
    assert torch.equal(result['gt_index'], expected_gt)
    fg = expected_gt >= 0
    assert int(fg.sum()) == [0, 11, 55, 311, 811][index]
    # u of the assigned pairs.
    assert_close(result['overlaps'][fg], case['tal_max_overlaps'][fg],
                 'IoU of the assigned pairs')
    # t-hat of eq. (10) from MMDetection's raw t: per GT over its
    # positives, t / (max t + 1e-7) * max u.
    t = case['tal_assign_metrics']
    u = case['tal_max_overlaps']
    t_hat = torch.zeros_like(t)
    for g in expected_gt[fg].unique():
        mine = expected_gt == g
        t_hat[mine] = t[mine] / (t[mine].max() + 1e-7) * u[mine].max()
    assert_close(result['metrics'], t_hat, 't-hat')


@pytest.mark.parametrize('index', range(5))
def test_atss_assignment(reference, index):
    case = reference['assign'][index]
    gt_index = assign_atss(case)
    assert torch.equal(gt_index, case['atss_gt_inds'] - 1)
    assert int((gt_index >= 0).sum()) == [0, 9, 64, 306, 830][index]
