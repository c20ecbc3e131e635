"""Turn ImageNet ResNet/ResNeXt weights into a backbone checkpoint.

    python tools/model_converters/torchvision_to_tood.py \\
        resnext101_64x4d-173b62eb.pth checkpoints/resnext101_64x4d.pth

Reads torchvision files (``resnet50-0676ba61.pth``,
``resnext101_64x4d-173b62eb.pth`` ...) and MMPretrain ImageNet
checkpoints, reads the architecture off the tensors, checks that our
backbone loads them strictly, drops the classifier and writes
``{'state_dict', 'meta'}``. Use the result as
``init_cfg=dict(type='Pretrained', checkpoint=DST)`` of the backbone printed
at the end (e.g. to train without network access, where
``torchvision://resnet50`` cannot be fetched).
"""
import argparse
import os.path as osp
import sys

from tood.errors import UnsafeCheckpointError
from tood.model_converters import (ArchitectureError, backbone_state_dict,
                                   check_backbone_weights, infer_resnet_arch,
                                   load_source_checkpoint, save_converted,
                                   split_checkpoint)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert ImageNet ResNet/ResNeXt weights into a '
        'backbone checkpoint')
    parser.add_argument('src', help='torchvision or MMPretrain .pth')
    parser.add_argument('dst', help='where to write the backbone .pth')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        checkpoint = load_source_checkpoint(args.src)
    except (UnsafeCheckpointError, FileNotFoundError, TypeError) as error:
        sys.exit(str(error))
    state_dict, _ = split_checkpoint(checkpoint)
    state_dict, dropped = backbone_state_dict(state_dict)
    try:
        arch = infer_resnet_arch(state_dict)
        check_backbone_weights(state_dict, arch)
    except ArchitectureError as error:
        sys.exit(f'Cannot convert {args.src}: {error}')

    meta = dict(
        arch=arch,
        converted_from=dict(file=osp.basename(args.src)),
        dropped_keys=dropped)
    save_converted(args.dst, state_dict, meta)
    arch_text = ', '.join(f'{k}={v!r}' for k, v in arch.items())
    print(f'wrote {args.dst}: {len(state_dict)} tensors of {arch_text}; '
          f'dropped {", ".join(dropped) if dropped else "nothing"}')
    print('use it as\n'
          f'  backbone=dict({arch_text}, ...,\n'
          f"      init_cfg=dict(type='Pretrained', checkpoint='{args.dst}'))")


if __name__ == '__main__':
    main()
