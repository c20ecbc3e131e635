"""Test images with their predicted boxes (``tools/test.py --show-dir``)."""
import os.path as osp
from typing import Optional, Sequence

from mmengine.hooks import Hook

from tood.registry import HOOKS
from tood.visualization import draw_instances, imwrite, original_image


@HOOKS.register_module()
class DetVisualizationHook(Hook):
    """Draw the predictions of the test loop into ``test_out_dir``.

    Boxes are drawn in the original image frame, on the file at ``img_path``
    when there is one, else on the network input resized back (datasets that
    generate their images have no file). Only the test loop draws; the hook
    is in ``default_hooks`` so ``tools/test.py`` can switch it on.

    Args:
        draw: Draw at all.
        score_thr: Boxes scoring below this are left out.
        test_out_dir: Where the images go; created when needed.
    """

    def __init__(self,
                 draw: bool = False,
                 score_thr: float = 0.3,
                 test_out_dir: Optional[str] = None) -> None:
        self.draw = draw
        self.score_thr = score_thr
        self.test_out_dir = test_out_dir

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        if not self.draw or self.test_out_dir is None:
            return
        metainfo = runner.test_dataloader.dataset.metainfo
        for i, sample in enumerate(outputs):
            image = original_image(sample.metainfo, data_batch['inputs'][i])
            drawn = draw_instances(
                image,
                sample.pred_instances.cpu(),
                class_names=metainfo.get('classes'),
                palette=metainfo.get('palette'),
                score_thr=self.score_thr)
            imwrite(
                osp.join(self.test_out_dir, self._file_name(sample)), drawn)

    @staticmethod
    def _file_name(sample) -> str:
        img_path = sample.metainfo.get('img_path')
        if img_path:
            return osp.basename(img_path)
        return f"{sample.metainfo.get('img_id', 'image')}.jpg"
