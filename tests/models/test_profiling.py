"""The profiler regions the library marks (tood.models.profiling): each
phase shows under its name in a torch.profiler run, where it belongs, for
every training method."""
import os.path as osp

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.structures import InstanceData
from torch.profiler import profile

from tood.apis import init_detector
from tood.models import profiling
from tood.structures import DetDataSample

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', 'configs')
ALL = (profiling.NETWORK, profiling.LOSSES, profiling.ASSIGN,
       profiling.POSTPROCESS)
# The main job's network, narrower.
TINY = {'model.neck.out_channels': 16, 'model.bbox_head.in_channels': 16,
        'model.bbox_head.feat_channels': 16,
        'model.bbox_head.norm_cfg.num_groups': 4}


def regions(fn) -> dict:
    """Label -> (calls, the labels among its ancestors) over one call."""
    with profile() as prof:
        fn()
    found = {}
    for event in prof.events():
        if event.name in ALL:
            parents, parent = set(), event.cpu_parent
            while parent is not None:
                parents.add(parent.name)
                parent = parent.cpu_parent
            calls, _ = found.get(event.name, (0, set()))
            found[event.name] = (calls + 1, parents & set(ALL))
    return found


def batch() -> dict:
    """Two 64x96 images, one GT box each."""
    samples = []
    for i in range(2):
        sample = DetDataSample(metainfo=dict(
            img_shape=(64, 96), ori_shape=(64, 96), scale_factor=(1, 1)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[8.0 + i, 10.0, 50.0, 40.0]]),
            labels=torch.tensor([i]))
        samples.append(sample)
    g = torch.Generator().manual_seed(0)
    return dict(inputs=[torch.randint(0, 256, (3, 64, 96), generator=g,
                                      dtype=torch.uint8) for _ in samples],
                data_samples=samples)


@pytest.mark.parametrize('config', [
    'tood/tood_r18_fpn_11e_shapes.py', 'atss/atss_r18_fpn_11e_shapes.py',
    'gfl/gfl_r18_fpn_11e_shapes.py'])
def test_train_and_test_steps_show_each_phase_once(config, set_epoch):
    model = init_detector(osp.join(CONFIGS, config), None, 'cpu', TINY)
    set_epoch(4)  # TOOD: task-aligned assignment after the warm-up
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0))
    model.train()
    assert regions(lambda: model.train_step(batch(), wrapper)) == {
        profiling.NETWORK: (1, set()),
        profiling.LOSSES: (1, set()),
        profiling.ASSIGN: (1, {profiling.LOSSES}),
    }
    model.eval()
    with torch.no_grad():
        assert regions(lambda: model.test_step(batch())) == {
            profiling.NETWORK: (1, set()),
            profiling.POSTPROCESS: (1, set()),
        }


def test_a_network_standing_in_keeps_its_label():
    """The label is around the call of ``network``, so a compiled network
    (an instance attribute in its place) is labelled too."""
    model = init_detector(osp.join(CONFIGS, 'tood/tood_r18_fpn_11e_shapes.py'),
                          None, 'cpu', TINY)
    model.network = lambda inputs: type(model).network(model, inputs)
    with torch.no_grad():
        assert regions(lambda: model.test_step(batch()))[
            profiling.NETWORK] == (1, set())
