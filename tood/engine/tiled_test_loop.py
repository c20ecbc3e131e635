"""``tools/test.py --tile``: evaluate with tiled inference.

A test loop (``test_cfg=dict(type='TiledTestLoop', ...)``) that detects in
each test image with ``tood.apis.inference_tiled``, from the original
image file, and hands the merged detections (original-image pixels) to the
config's evaluator, exactly as the ordinary loop hands its own. The
dataloader still provides the images' ground truth and metainfo.
"""
import time
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import is_model_wrapper
from mmengine.runner import TestLoop
from mmengine.structures import InstanceData

from tood.apis import default_input_shape, inference_tiled
from tood.errors import ConfigError
from tood.registry import LOOPS


@LOOPS.register_module()
class TiledTestLoop(TestLoop):
    """mmengine's ``TestLoop`` with each image detected in tiles.

    Args:
        runner, dataloader, evaluator: as ``TestLoop``.
        tile: (h, w) or one side of a tile; None takes the size the test
            pipeline makes images (its ``Resize`` scale).
        overlap, whole: as ``inference_tiled``.
    """

    def __init__(self, runner, dataloader, evaluator,
                 tile: Optional[Union[int, Sequence[int]]] = None,
                 overlap: float = 0.25, whole: bool = True,
                 fp16: bool = False) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        tile = tile or default_input_shape(runner.cfg)
        if not tile:
            raise ConfigError(
                'test_cfg.tile: the test pipeline has no fixed input size: '
                'give the tile size (tools/test.py --tile 640)')
        self.tile: Tuple[int, int] = (tile, tile) if isinstance(
            tile, int) else tuple(tile)
        self.overlap, self.whole = overlap, whole

    def run(self) -> Dict[str, float]:
        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
        model = self.runner.model.module if is_model_wrapper(
            self.runner.model) else self.runner.model
        model.eval()
        # What tood.apis needs of a detector.
        model.cfg = self.runner.cfg
        model.dataset_meta = self.dataloader.dataset.metainfo
        seconds, images = 0.0, 0
        for idx, data_batch in enumerate(self.dataloader):
            self.runner.call_hook('before_test_iter', batch_idx=idx,
                                  data_batch=data_batch)
            samples = data_batch['data_samples']
            start = time.perf_counter()
            with torch.no_grad():
                for sample in samples:
                    found = inference_tiled(model, sample.img_path,
                                            self.tile, self.overlap,
                                            self.whole).pred_instances
                    sample.pred_instances = InstanceData(
                        bboxes=found.bboxes, scores=found.scores,
                        labels=found.labels)
            seconds += time.perf_counter() - start
            images += len(samples)
            self.evaluator.process(data_samples=samples,
                                   data_batch=data_batch)
            self.runner.call_hook('after_test_iter', batch_idx=idx,
                                  data_batch=data_batch, outputs=samples)
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        self.runner.logger.info(
            f'tiled inference: tiles of {self.tile[0]}x{self.tile[1]}, '
            f'overlap {self.overlap}, whole image '
            f'{"on" if self.whole else "off"}; '
            f'{1000 * seconds / max(images, 1):.0f} ms per image')
        self.runner.call_hook('after_test_epoch', metrics=metrics)
        self.runner.call_hook('after_test')
        return metrics
