"""ResNet backbone (He et al., 2016) with MMDetection's options.

Module and parameter names equal torchvision's (``conv1``, ``bn1``,
``layer1.0.conv2``, ``layer1.0.downsample.0`` ...), so torchvision and
MMDetection ImageNet checkpoints load without renaming.
"""
import logging
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Type, Union

import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.runner import CheckpointLoader
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from tood.models.layers import ModulatedDeformConv2d, build_conv
from tood.registry import MODELS


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34)."""

    expansion = 1

    def __init__(self,
                 inplanes: int,
                 planes: int,
                 stride: int = 1,
                 dilation: int = 1,
                 downsample: Optional[nn.Module] = None,
                 style: str = 'pytorch',
                 norm_cfg: dict = dict(type='BN'),
                 dcn: Optional[dict] = None,
                 groups: int = 1,
                 base_width: int = 64) -> None:
        super().__init__()
        if dcn is not None:
            raise ValueError('DCN is only supported in Bottleneck blocks '
                             '(ResNet-50 and deeper)')
        if groups != 1 or base_width != 64:
            raise ValueError('BasicBlock only supports groups=1 and '
                             'base_width=64')
        # With a single 3x3 conv before the stride there is no caffe/pytorch
        # difference: the stride always sits on conv1.
        self.conv1 = nn.Conv2d(
            inplanes,
            planes,
            3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            bias=False)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, planes, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, planes, postfix=2)
        self.add_module(self.norm2_name, norm2)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    @property
    def last_norm(self) -> nn.Module:
        return getattr(self, self.norm2_name)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(getattr(self, self.norm1_name)(self.conv1(x)))
        out = getattr(self, self.norm2_name)(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 convs (ResNet-50 and deeper, ResNeXt).

    ``style='pytorch'`` puts the stride on the 3x3 conv, ``'caffe'`` on the
    first 1x1 conv. ``dcn`` (e.g. ``dict(type='DCNv2', deform_groups=1)``)
    replaces the 3x3 conv; with ``fallback_on_stride=True`` in it, a strided
    3x3 conv stays a plain conv.
    """

    expansion = 4

    def __init__(self,
                 inplanes: int,
                 planes: int,
                 stride: int = 1,
                 dilation: int = 1,
                 downsample: Optional[nn.Module] = None,
                 style: str = 'pytorch',
                 norm_cfg: dict = dict(type='BN'),
                 dcn: Optional[dict] = None,
                 groups: int = 1,
                 base_width: int = 64) -> None:
        super().__init__()
        if style not in ('pytorch', 'caffe'):
            raise ValueError(f"style must be 'pytorch' or 'caffe', "
                             f"got '{style}'")
        conv1_stride, conv2_stride = ((1, stride) if style == 'pytorch' else
                                      (stride, 1))
        # ResNeXt: the 3x3 conv is grouped and widened by base_width / 64.
        width = planes if groups == 1 else (planes * base_width // 64) * groups
        if width < 1:
            raise ValueError(f'planes={planes} with base_width={base_width} '
                             'leaves no channel per group')

        conv2_cfg = None
        if dcn is not None:
            conv2_cfg = dict(dcn)
            fallback_on_stride = conv2_cfg.pop('fallback_on_stride', False)
            if fallback_on_stride and conv2_stride > 1:
                conv2_cfg = None

        self.conv1 = nn.Conv2d(
            inplanes, width, 1, stride=conv1_stride, bias=False)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, width, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = build_conv(
            conv2_cfg,
            width,
            width,
            3,
            stride=conv2_stride,
            padding=dilation,
            dilation=dilation,
            groups=groups,
            bias=False)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, width, postfix=2)
        self.add_module(self.norm2_name, norm2)
        self.conv3 = nn.Conv2d(
            width, planes * self.expansion, 1, bias=False)
        self.norm3_name, norm3 = build_norm_layer(
            norm_cfg, planes * self.expansion, postfix=3)
        self.add_module(self.norm3_name, norm3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    @property
    def last_norm(self) -> nn.Module:
        return getattr(self, self.norm3_name)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(getattr(self, self.norm1_name)(self.conv1(x)))
        out = self.relu(getattr(self, self.norm2_name)(self.conv2(out)))
        out = getattr(self, self.norm3_name)(self.conv3(out))
        return self.relu(out + identity)


Block = Union[BasicBlock, Bottleneck]


def convert_torchvision_resnet(
        state_dict: Dict[str, Tensor]) -> 'OrderedDict[str, Tensor]':
    """Map a torchvision ResNet/ResNeXt state dict to this backbone's keys.

    The layer names are the same; only the ImageNet classifier (``fc.*``)
    is dropped, as is a ``module.`` prefix left by (Distributed)DataParallel.
    """
    converted = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('module.'):
            key = key[len('module.'):]
        if key.startswith('fc.'):
            continue
        converted[key] = value
    return converted


def _load_checkpoint_file(path: str) -> dict:
    """Load a checkpoint from a local path or a URL scheme understood by
    mmengine (``torchvision://``, ``open-mmlab://``, ``http(s)://``).

    Local files go through torch's ``weights_only`` loader (mmengine's, or
    ``tood.engine.load_from_local`` once ``register_all_modules`` ran), so a
    file holding arbitrary pickled objects is refused rather than run.
    """
    if '://' not in path:
        path = osp.expanduser(path)
        if not osp.isfile(path):
            raise FileNotFoundError(f'Pretrained checkpoint not found: {path}')
    return CheckpointLoader.load_checkpoint(path, map_location='cpu')


def _extract_backbone_state_dict(checkpoint: dict) -> Dict[str, Tensor]:
    """The backbone's tensors out of a raw state dict, a training checkpoint
    (``state_dict``/``model``) or a whole detector/classifier checkpoint."""
    if 'state_dict' in checkpoint:
        state_dict = checkpoint['state_dict']
    elif 'model' in checkpoint:
        state_dict = checkpoint['model']
    else:
        state_dict = checkpoint
    state_dict = {(k[len('module.'):] if k.startswith('module.') else k): v
                  for k, v in state_dict.items()}
    # A detector (or mmpretrain classifier) checkpoint: keep the backbone.
    if any(k.startswith('backbone.') for k in state_dict):
        state_dict = {
            k[len('backbone.'):]: v
            for k, v in state_dict.items() if k.startswith('backbone.')
        }
    return convert_torchvision_resnet(state_dict)


@MODELS.register_module()
class ResNet(BaseModule):
    """ResNet backbone returning the feature maps of the chosen stages.

    Args:
        depth: 18, 34, 50, 101 or 152.
        in_channels: Image channels.
        stem_channels: Channels of the 7x7 stem conv.
        base_channels: Width of the first stage (stage i: base * 2**i,
            times the block expansion at its output).
        num_stages: Number of residual stages (1-4).
        strides, dilations: Per stage, applied in its first block.
        out_indices: Stages whose outputs are returned (0 = C2 ... 3 = C5).
        style: 'pytorch' (stride on the 3x3 conv) or 'caffe' (on the 1x1).
        frozen_stages: Freeze the stem and the first ``frozen_stages``
            stages (no gradients, eval mode). -1 freezes nothing.
        norm_cfg: Norm layer config for mmcv's ``build_norm_layer``
            ('BN', 'SyncBN', 'GN', ...).
        norm_eval: Keep BatchNorm layers in eval mode (running statistics
            frozen) during training; their affine parameters still train.
        dcn: Deformable conv config for the 3x3 convs, e.g.
            ``dict(type='DCNv2', deform_groups=1, fallback_on_stride=False)``.
        stage_with_dcn: Which stages use ``dcn``.
        groups, base_width: Grouped 3x3 convs; set by :class:`ResNeXt`.
        zero_init_residual: Zero the last norm's scale in each block, so
            every residual branch starts as identity.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` to load
            ImageNet weights (torchvision or MMDetection format); None for
            the default Kaiming init.
    """

    arch_settings: Dict[int, Tuple[Type[Block], Tuple[int, ...]]] = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3)),
    }

    def __init__(self,
                 depth: int,
                 in_channels: int = 3,
                 stem_channels: int = 64,
                 base_channels: int = 64,
                 num_stages: int = 4,
                 strides: Sequence[int] = (1, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1),
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 style: str = 'pytorch',
                 frozen_stages: int = -1,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = True,
                 dcn: Optional[dict] = None,
                 stage_with_dcn: Sequence[bool] = (False, False, False, False),
                 groups: int = 1,
                 base_width: int = 64,
                 zero_init_residual: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if depth not in self.arch_settings:
            raise KeyError(f'invalid depth {depth} for ResNet; expected one '
                           f'of {sorted(self.arch_settings)}')
        if not 1 <= num_stages <= 4:
            raise ValueError(f'num_stages must be in [1, 4], got {num_stages}')
        if len(strides) < num_stages or len(dilations) < num_stages:
            raise ValueError('strides and dilations need one entry per stage')
        if len(stage_with_dcn) < num_stages:
            raise ValueError('stage_with_dcn needs one entry per stage')
        if not out_indices or max(out_indices) >= num_stages:
            raise ValueError(f'out_indices {tuple(out_indices)} must be '
                             f'non-empty and below num_stages={num_stages}')
        if style not in ('pytorch', 'caffe'):
            raise ValueError(f"style must be 'pytorch' or 'caffe', "
                             f"got '{style}'")
        if frozen_stages > num_stages:
            raise ValueError(f'frozen_stages={frozen_stages} exceeds '
                             f'num_stages={num_stages}')
        self.depth = depth
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.zero_init_residual = zero_init_residual

        block, stage_blocks = self.arch_settings[depth]
        stage_blocks = stage_blocks[:num_stages]

        self.conv1 = nn.Conv2d(
            in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
        self.norm1_name, norm1 = build_norm_layer(
            norm_cfg, stem_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        inplanes = stem_channels
        self.res_layers: List[str] = []
        for i, num_blocks in enumerate(stage_blocks):
            planes = base_channels * 2**i
            stage = self._make_stage(
                block,
                inplanes,
                planes,
                num_blocks,
                stride=strides[i],
                dilation=dilations[i],
                style=style,
                norm_cfg=norm_cfg,
                dcn=dcn if stage_with_dcn[i] else None,
                groups=groups,
                base_width=base_width)
            inplanes = planes * block.expansion
            name = f'layer{i + 1}'
            self.add_module(name, stage)
            self.res_layers.append(name)
        self.feat_dim = inplanes

        self._reset_parameters()
        # Apply frozen_stages and norm_eval right away, not only once a
        # runner calls train().
        self.train()

    @staticmethod
    def _make_stage(block: Type[Block], inplanes: int, planes: int,
                    num_blocks: int, stride: int, dilation: int,
                    norm_cfg: dict, **block_kwargs) -> nn.Sequential:
        downsample = None
        if stride != 1 or inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(
                    inplanes,
                    planes * block.expansion,
                    1,
                    stride=stride,
                    bias=False),
                build_norm_layer(norm_cfg, planes * block.expansion)[1])
        layers = [
            block(
                inplanes,
                planes,
                stride=stride,
                dilation=dilation,
                downsample=downsample,
                norm_cfg=norm_cfg,
                **block_kwargs)
        ]
        for _ in range(1, num_blocks):
            layers.append(
                block(
                    planes * block.expansion,
                    planes,
                    dilation=dilation,
                    norm_cfg=norm_cfg,
                    **block_kwargs))
        return nn.Sequential(*layers)

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    def _reset_parameters(self) -> None:
        """Kaiming convs, unit norms, zero offsets for DCN, and zero-gamma
        last norms when ``zero_init_residual``."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, ModulatedDeformConv2d)):
                nn.init.kaiming_normal_(
                    m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (_BatchNorm, nn.GroupNorm)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # After the loop: it re-initialised the conv_offset convs too.
        for m in self.modules():
            if isinstance(m, ModulatedDeformConv2d):
                m.init_offset()
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_norm.weight)

    def init_weights(self) -> None:
        """Default init, or load ``init_cfg=dict(type='Pretrained', ...)``.

        Missing and unexpected keys are logged, not fatal: a classification
        checkpoint lacks e.g. the DCN offset convs, which keep their init.
        """
        if self.init_cfg is None:
            self._reset_parameters()
        elif (isinstance(self.init_cfg, dict)
              and self.init_cfg.get('type') == 'Pretrained'):
            checkpoint = self.init_cfg['checkpoint']
            state_dict = _extract_backbone_state_dict(
                _load_checkpoint_file(checkpoint))
            result = self.load_state_dict(state_dict, strict=False)
            print_log(
                f'Loaded {self.__class__.__name__} weights from {checkpoint}',
                logger='current')
            if result.missing_keys:
                print_log(
                    'missing keys in the checkpoint: ' +
                    ', '.join(result.missing_keys),
                    logger='current',
                    level=logging.WARNING)
            if result.unexpected_keys:
                print_log(
                    'unexpected keys in the checkpoint: ' +
                    ', '.join(result.unexpected_keys),
                    logger='current',
                    level=logging.WARNING)
        else:
            super().init_weights()
        self._is_init = True
        self._freeze_stages()

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.conv1, self.norm1] + [
            getattr(self, name)
            for name in self.res_layers[:self.frozen_stages]
        ]
        for m in frozen:
            m.eval()
            for param in m.parameters():
                param.requires_grad = False

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """
        Args:
            x: Images (N, C, H, W).

        Returns:
            One tensor per ``out_indices`` entry; stage i has stride
            4 * 2**i with the default strides.
        """
        x = self.maxpool(self.relu(self.norm1(self.conv1(x))))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True) -> 'ResNet':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
