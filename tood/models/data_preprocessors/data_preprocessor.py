"""Normalise, convert BGR to RGB and pad a batch of images."""
import math
from typing import Optional, Sequence

from mmengine.model import ImgDataPreprocessor

from tood.registry import MODELS


@MODELS.register_module()
class DetDataPreprocessor(ImgDataPreprocessor):
    """mmengine's image preprocessor plus the shapes a detection head needs.

    After the batch is padded, every data sample's metainfo gets
    ``batch_input_shape`` (H, W of the padded batch) and ``pad_shape`` (its
    own image shape rounded up to ``pad_size_divisor``). The head uses
    ``pad_shape`` to mark which prior points lie on the image rather than on
    the batch padding.
    """

    def __init__(self,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 pad_size_divisor: int = 32,
                 pad_value: float = 0,
                 bgr_to_rgb: bool = False,
                 non_blocking: bool = False):
        super().__init__(
            mean=mean,
            std=std,
            pad_size_divisor=pad_size_divisor,
            pad_value=pad_value,
            bgr_to_rgb=bgr_to_rgb,
            non_blocking=non_blocking)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        inputs, data_samples = data['inputs'], data['data_samples']
        if data_samples is not None:
            batch_input_shape = tuple(inputs.shape[-2:])
            d = self.pad_size_divisor
            for sample in data_samples:
                h, w = sample.metainfo['img_shape'][:2]
                sample.set_metainfo({
                    'batch_input_shape': batch_input_shape,
                    'pad_shape': (math.ceil(h / d) * d, math.ceil(w / d) * d),
                })
        return data
