# Fine-tuning instead of training from scratch: the BCCD config
# (tood_r18_fpn_ms-20e_bccd.py) started from the main job's trained weights
# (tood_r18_fpn_11e_shapes.py, the same network trained on the built-in
# shapes). Train the main job first, or set load_from to your own
# checkpoint of this network:
#   python tools/train.py configs/tood/tood_r18_fpn_11e_shapes.py
#   python tools/train.py configs/tood/tood_r18_fpn_finetune-ms-20e_bccd.py
# The checkpoint's classes (shapes) share no name with BCCD's, so the
# classifier starts fresh and everything else is loaded; with a checkpoint
# of classes that match by name, their rows are copied (docs/finetuning.md).
# Its result against training from scratch, at the same time, is in
# docs/finetuning.md.
_base_ = './tood_r18_fpn_ms-20e_bccd.py'

load_from = 'work_dirs/tood_r18_fpn_11e_shapes/epoch_11.pth'
