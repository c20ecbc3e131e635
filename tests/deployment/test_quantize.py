"""Which training images calibrate the INT8 quantization, which nodes it
quantizes, and its check of the scales it wrote."""
import numpy as np
import pytest

from tood.deployment import ExportError
from tood.deployment.quantize import (calibration_infos, check_scales,
                                      feature_path, spread_indices)


def test_spread_indices_cover_the_split():
    assert spread_indices(10, 3) == [0, 4, 9]  # 4.5 rounds to even
    assert spread_indices(5, 5) == [0, 1, 2, 3, 4]
    assert spread_indices(3, 8) == [0, 1, 2]
    assert spread_indices(1000, 32)[-1] == 999
    assert len(spread_indices(1000, 32)) == 32


class Images:
    """A dataset that runs a pipeline: ``n`` images named by ``prefix``."""

    pipeline = None

    def __init__(self, prefix: str, n: int):
        self.paths = [f'{prefix}{i}.jpg' for i in range(n)]
        self.initialised = False

    def full_init(self):
        self.initialised = True

    def __len__(self):
        return len(self.paths)

    def get_data_info(self, i):
        assert self.initialised
        return dict(img_path=self.paths[i])


class Repeated:
    """RepeatDataset / ClassBalancedDataset: one dataset inside."""

    def __init__(self, dataset):
        self.dataset = dataset


class Concatenated:
    """ConcatDataset: several inside."""

    def __init__(self, *datasets):
        self.datasets = datasets


def test_calibration_images_come_from_inside_wrappers_once_each():
    dataset = Concatenated(Repeated(Images('a', 4)), Images('b', 6))
    infos = calibration_infos(dataset, 4)
    assert [i['img_path'] for i in infos] == [
        'a0.jpg', 'a3.jpg', 'b2.jpg', 'b5.jpg']
    everything = calibration_infos(dataset, 100)
    assert len(everything) == 10
    assert len({i['img_path'] for i in everything}) == 10


def save_graph(path, nodes, initializers, outputs):
    """A float32 graph on input ``x`` (1, 2, 4, 4), saved to ``path``."""
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        nodes, 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT,
                                       [1, 2, 4, 4])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
         for name in outputs], initializers)
    onnx.save(helper.make_model(graph), str(path))
    return str(path)


def test_feature_path_ends_at_the_last_convolution(tmp_path):
    """Ops whose output reaches a convolution are quantized; the same op
    types after the last convolution (decoding, scores) are not."""
    pytest.importorskip('onnx')
    from onnx import helper, numpy_helper
    const = [numpy_helper.from_array(np.full(shape, 0.5, np.float32), name)
             for name, shape in (('w', (2, 2, 1, 1)), ('k', (1, )))]
    make = helper.make_node
    nodes = [
        make('Conv', ['x', 'w'], ['c1'], name='conv1'),
        make('Relu', ['c1'], ['r1'], name='relu1'),
        make('Mul', ['r1', 'k'], ['m1'], name='scale'),
        make('Conv', ['m1', 'w'], ['c2'], name='conv2'),
        make('Sigmoid', ['c2'], ['s'], name='sigmoid'),
        make('Mul', ['s', 'k'], ['y'], name='decode'),
        make('Add', ['r1', 'k'], ['z'], name='side_branch'),
    ]
    path = save_graph(tmp_path / 'g.onnx', nodes, const, ['y', 'z'])
    assert feature_path(path) == ['conv1', 'relu1', 'scale', 'conv2']


def test_check_scales_refuses_a_range_that_is_not_finite(tmp_path):
    pytest.importorskip('onnx')
    from onnx import helper, numpy_helper
    for scale, ok in ((0.1, True), (np.inf, False), (0.0, False)):
        const = [numpy_helper.from_array(np.array(scale, np.float32), 's'),
                 numpy_helper.from_array(np.array(0, np.uint8), 'z')]
        nodes = [helper.make_node('QuantizeLinear', ['x', 's', 'z'], ['q']),
                 helper.make_node('DequantizeLinear', ['q', 's', 'z'],
                                  ['y'])]
        path = save_graph(tmp_path / f'{scale}.onnx', nodes, const, ['y'])
        if ok:
            check_scales(path)
        else:
            with pytest.raises(ExportError, match='quantizing x gave'):
                check_scales(path)
