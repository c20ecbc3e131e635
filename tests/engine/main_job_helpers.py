"""The main job's configs shrunk to seconds: shared by the EMA and compile
tests."""
import os.path as osp

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
MAIN_JOB = osp.join(REPO, 'configs', 'tood', 'tood_r18_fpn_11e_shapes.py')
EMA_CONFIG = osp.join(REPO, 'configs', 'tood',
                      'tood_r18_fpn_ema_11e_shapes.py')


def tiny_options(root: str, epochs: int = 2) -> dict:
    """``--cfg-options`` for the main job's model trained for ``epochs``
    epochs of 4 iterations on 64x64 images in ``root`` (drawn there by the
    config's data_preparer), validated and saved after each epoch."""
    ann = osp.join(root, 'annotations', 'instances_val.json')
    return {
        'data_preparer.data_root': root,
        'data_preparer.num_train': 16,
        'data_preparer.num_val': 4,
        'data_preparer.img_size': 64,
        'train_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.data_root': root,
        'test_dataloader.dataset.data_root': root,
        'train_dataloader.batch_size': 4,
        'val_evaluator.ann_file': ann,
        'test_evaluator.ann_file': ann,
        'train_cfg.max_epochs': epochs,
        'train_cfg.val_interval': 1,
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.checkpoint.max_keep_ckpts': 3,
        'default_hooks.logger.interval': 1,
        # Keep every detection, so that predictions differ between weights.
        'model.test_cfg.score_thr': 0.0,
        'custom_hooks': [],
        'randomness.deterministic': True,
    }


def as_arguments(options: dict) -> list:
    """``options`` as the words of a ``--cfg-options``."""
    return [f'{key}={value}' for key, value in options.items()]
