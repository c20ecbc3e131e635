"""Which training images calibrate the INT8 quantization."""
from tood.deployment.quantize import calibration_infos, spread_indices


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
