# The main job's model tested on large images with small objects: 1024x1024
# canvases of the shapes drawer holding up to 40 objects of 8 to 48 px.
# The test pipeline shrinks each image to the 256x256 the model was trained
# at, so most objects fall below its finest stride (8 px); tiled inference
# detects them at their own size:
#   python tools/test.py configs/tood/tood_r18_fpn_11e_shapes-large.py \
#       work_dirs/tood_r18_fpn_11e_shapes/epoch_11.pth [--tile 256]
# Training with this config trains the main job (the training data are
# unchanged). Results: docs/deployment.md (tiled inference).
_base_ = './tood_r18_fpn_11e_shapes.py'

large_root = 'data/shapes_large/'
data_preparer = [
    {{_base_.data_preparer}},
    dict(
        type='ShapesPreparer',
        data_root=large_root,
        num_train=0,
        num_val=50,
        img_size=1024,
        max_objects=40,
        max_object_size=48,
        seed=0)
]

test_pipeline = [
    dict(type='LoadImageFromFile'),
    # The whole image at the training size.
    dict(type='Resize', scale=(256, 256), keep_ratio=True),
    # After the resize: the ground truth stays in the original frame.
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
val_dataloader = dict(
    batch_size=1,
    dataset=dict(
        data_root=large_root,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=large_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
