# The procedural shapes set (tood/datasets/shapes/), read as any COCO
# dataset:
#   data/shapes/annotations/instances_{train,val}.json
#   data/shapes/{train,val}/000000.png ...
# Nothing to download: the data_preparer below draws it (2000 train and 200
# val images of 256x256, about 30 s on two cores) when tools/train.py,
# tools/test.py or another tool is about to read data/shapes/ and finds it
# missing. It runs only for a config whose datasets read data/shapes/, so a
# derived config that points the datasets at other data never draws it.
dataset_type = 'CocoDataset'
data_root = 'data/shapes/'
backend_args = None
data_preparer = dict(
    type='ShapesPreparer',
    data_root=data_root,
    num_train=2000,
    num_val=200,
    img_size=256,
    seed=0)

# The images are already small: no resize.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val.json',
    metric='bbox',
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator
