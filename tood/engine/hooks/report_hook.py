"""A picture report of a finished training run."""
import os.path as osp
import traceback
from typing import List, Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop
from mmengine.structures import InstanceData

from tood.registry import HOOKS
from tood.visualization import (DEFAULT_KEYS, draw_instances, imwrite,
                                load_work_dir, original_image, plot_curves)

from .ema_hook import averaged_model


@HOOKS.register_module()
class TrainingReportHook(Hook):
    """After training, write curves and example predictions to look at.

    Into ``{work_dir}/{out_dir}/`` (rank 0 only):

    * ``curves.png``: ``loss``, ``loss_cls``, ``loss_bbox`` against the
      iteration and ``coco/bbox_mAP`` against the epoch, read from the
      run's ``vis_data/scalars.json`` (so a ``LocalVisBackend`` must be in
      ``vis_backends``, as in ``default_runtime.py``); a resumed run is
      joined to the runs before it;
    * ``pred_{img_id}.png`` for the first ``num_images`` images of the val
      dataset: the trained model's detections (with an ``EMAHook``, the
      averaged model's, as in the checkpoints) scoring at least
      ``score_thr``, with class names and scores, over the ground truth in
      thin white.

    Nothing happens after ``runner.val()`` or ``runner.test()``. A failure
    here is logged, not raised: the checkpoints are already written.

    Args:
        num_images: how many val images to draw (0: none).
        score_thr: detections below this score are not drawn.
        out_dir: relative to the work dir.
        draw_gt: also draw the ground-truth boxes.
    """

    priority = 'LOW'

    def __init__(self,
                 num_images: int = 8,
                 score_thr: float = 0.3,
                 out_dir: str = 'report',
                 draw_gt: bool = True) -> None:
        self.num_images = num_images
        self.score_thr = score_thr
        self.out_dir = out_dir
        self.draw_gt = draw_gt

    def after_run(self, runner) -> None:
        trained = isinstance(runner._train_loop, BaseLoop)
        if not trained or not is_main_process():
            return
        out_dir = osp.join(runner.work_dir, self.out_dir)
        for name, step in (('curves', self._write_curves),
                           ('predictions', self._write_predictions)):
            try:
                written = step(runner, out_dir)
            except Exception:  # noqa: BLE001 - the run itself succeeded
                runner.logger.warning(f'TrainingReportHook: no {name}:\n'
                                      f'{traceback.format_exc()}')
                continue
            if written:
                runner.logger.info(f'TrainingReportHook: {name} written to '
                                   f'{out_dir} ({len(written)} files)')

    def _write_curves(self, runner, out_dir: str) -> List[str]:
        log = load_work_dir(
            runner.work_dir,
            name=osp.basename(osp.normpath(runner.work_dir)),
            last_run=runner.log_dir)
        path = osp.join(out_dir, 'curves.png')
        plot_curves([log], path, DEFAULT_KEYS, title=log.name)
        return [path]

    @torch.no_grad()
    def _write_predictions(self, runner, out_dir: str) -> List[str]:
        if self.num_images <= 0:
            return []
        if runner.val_loop is None:
            runner.logger.info('TrainingReportHook: no val dataloader, so '
                               'no prediction images')
            return []
        dataloader = runner.val_dataloader
        dataset = dataloader.dataset
        metainfo = getattr(dataset, 'metainfo', {}) or {}
        class_names = metainfo.get('classes')
        palette = metainfo.get('palette')
        batch_size = dataloader.batch_size or 1

        # With EMA, the averaged weights: those the checkpoints hold.
        model = averaged_model(runner)
        if model is None:
            model = runner.model.module if is_model_wrapper(
                runner.model) else runner.model
        was_training = model.training
        model.eval()
        written = []
        try:
            indices = list(range(min(self.num_images, len(dataset))))
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                batch = dataloader.collate_fn([dataset[i] for i in chunk])
                inputs = list(batch['inputs'])
                outputs = model.val_step(batch)
                for index, network_input, sample in zip(
                        chunk, inputs, outputs):
                    image = original_image(sample.metainfo, network_input)
                    gt = self._ground_truth(dataset, index)
                    drawn = draw_instances(
                        image,
                        sample.pred_instances.cpu(),
                        gt,
                        class_names=class_names,
                        palette=palette,
                        score_thr=self.score_thr)
                    img_id = sample.metainfo.get('img_id', index)
                    written.append(
                        imwrite(
                            osp.join(out_dir, f'pred_{img_id}.png'), drawn))
        finally:
            model.train(was_training)
        return written

    def _ground_truth(self, dataset, index: int) -> Optional[InstanceData]:
        """The non-crowd boxes of the dataset record, in original pixels
        (the pipeline's boxes may be resized)."""
        if not self.draw_gt or not hasattr(dataset, 'get_data_info'):
            return None
        instances = [
            inst for inst in dataset.get_data_info(index).get(
                'instances', []) if not inst.get('ignore_flag', 0)
        ]
        gt = InstanceData()
        gt.bboxes = torch.tensor([inst['bbox'] for inst in instances],
                                 dtype=torch.float32).reshape(-1, 4)
        gt.labels = torch.tensor([inst['bbox_label'] for inst in instances],
                                 dtype=torch.long)
        return gt
