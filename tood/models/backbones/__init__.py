from .resnet import ResNet, convert_torchvision_resnet
from .resnext import ResNeXt

__all__ = ['ResNet', 'ResNeXt', 'convert_torchvision_resnet']
