"""A small VGG-style fully convolutional network: the architecture CNN-Fixations can trace.

Simonyan and Zisserman 2015 (VGG: stacks of 3x3 convolutions and 2x2 max pooling) as an FCN (Long,
Shelhamer and Darrell 2015: a 1x1 classifier on the features, upsampled to the input) with dilated 3x3
convolutions in the last block for a wider receptive field at stride 4 (Yu and Koltun 2016). Every layer is
a Conv2d, BatchNorm2d, ReLU, MaxPool2d or Upsample in one ``nn.Sequential``, so the fixation tracer
(:mod:`segaudit.cam.fixations`) can unravel it; there is no residual addition or concatenation.

Layers (``features.<i>``; stride in brackets)::

    0-6    conv 3->16, conv 16->16 (1), max pool 6 (2)         block 1 (each conv: Conv2d, BatchNorm2d, ReLU)
    7-13   conv 16->32, conv 32->32 (2), max pool 13 (4)       block 2
    14-22  conv 32->64, conv d2 64->64, conv d4 64->64          block 3 (4), receptive field about 90 px
    classifier: 1x1 conv 64->K, bilinear upsampling x4 to the input
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

__all__ = ["VGG_FCN_DEFAULT_LAYER", "vgg_fcn"]

#: Grad-CAM layer of the VGG-FCN: the output of the last block (after its ReLU).
VGG_FCN_DEFAULT_LAYER = "features.22"


def _conv(cin: int, cout: int, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=False)]


def vgg_fcn(num_classes: int, width: int = 16) -> nn.Sequential:
    """The VGG-FCN with random weights (see the module docstring); ``width`` channels in the first block."""
    w1, w2, w3 = width, 2 * width, 4 * width
    features = nn.Sequential(
        *_conv(3, w1), *_conv(w1, w1), nn.MaxPool2d(2),
        *_conv(w1, w2), *_conv(w2, w2), nn.MaxPool2d(2),
        *_conv(w2, w3), *_conv(w3, w3, dilation=2), *_conv(w3, w3, dilation=4),
    )
    classifier = nn.Sequential(nn.Conv2d(w3, num_classes, 1),
                               nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False))
    return nn.Sequential(OrderedDict(features=features, classifier=classifier))
