"""Xception (Chollet 2017) for grayscale chromosome images.

* Entry flow: conv 3x3 32 stride 2, conv 3x3 64 (each BN + ReLU); three modules
  [(ReLU) SepConv - BN - ReLU - SepConv - BN - max-pool 3x3 stride 2] of 128, 256 and 728 filters,
  each added to a 1x1 stride-2 conv + BN shortcut (the first module starts without ReLU).
* Middle flow: ``middle_repeats`` (published 8) modules of three ReLU - SepConv 728 - BN with an
  identity shortcut.
* Exit flow: ReLU - SepConv 728 - BN - ReLU - SepConv 1024 - BN - max-pool stride 2, plus a 1x1
  stride-2 conv + BN shortcut; then SepConv 1536 - BN - ReLU - SepConv 2048 - BN - ReLU.
* Global average pooling (2048-d features) and one dense layer.

A depthwise separable conv (``SepConv``) is a 3x3 depthwise conv (``groups = in channels``)
followed by a 1x1 pointwise conv, both without bias and with no non-linearity between them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from karyosr.classify.backbones._common import Backbone, check_dropout, check_positive_int, init_conv_bn, scaled


class SeparableConv2d(nn.Module):
    """3x3 depthwise conv (one filter per input channel) + 1x1 pointwise conv, no bias."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, kernel_size, padding=kernel_size // 2, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionModule(nn.Module):
    """[ReLU] SepConv - BN for each width in ``widths``, optional stride-2 max-pool, plus a
    shortcut (1x1 stride-2 conv + BN when pooling or when the channel count changes, else identity)."""

    def __init__(self, cin: int, widths: Sequence[int], downsample: bool, start_with_relu: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        c = cin
        for i, cout in enumerate(widths):
            if i > 0 or start_with_relu:
                # not in place: the module input is reused by the shortcut
                layers.append(nn.ReLU(inplace=False))
            layers += [SeparableConv2d(c, cout), nn.BatchNorm2d(cout)]
            c = cout
        if downsample:
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.body = nn.Sequential(*layers)
        stride = 2 if downsample else 1
        if downsample or cin != c:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, c, 1, stride=stride, bias=False), nn.BatchNorm2d(c))
        else:
            self.shortcut = nn.Identity()
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class Xception(Backbone):
    """Xception.

    Args:
        num_classes: output logits.
        width: multiplies every channel count (32, 64, 128, 256, 728, 1024, 1536, 2048), each at
            least 4.
        middle_repeats: middle-flow modules (published 8; 0 allowed).
        dropout: dropout before the dense layer (published: none, 0.0).
        small_input: the first conv gets stride 1 instead of 2 (total stride 16 instead of 32),
            so at 48 px the middle flow works on 6x6 maps instead of 3x3. Default True; False =
            the published entry.
        in_channels: 1 (grayscale).
        standardize_input: standardise each image first (see :class:`Backbone`).

    Padding: the published network uses unpadded ("valid") convs in the first two layers, which
    needs at least 71x71 inputs; here every conv and pool is padded, so each stride-2 layer maps
    ``s`` to ``ceil(s / 2)`` (total stride 32: 299 px still ends at 10x10 as published, 128 px
    at 4x4, 64 px at 2x2, 32 px at 1x1). Parameter counts are unaffected.

    Minimum input size: 32x32 (enforced; smaller inputs raise ValueError). Published size:
    20.9 M parameters for 1 channel / 24 classes.
    """

    def __init__(
        self,
        num_classes: int = 24,
        width: float = 1.0,
        middle_repeats: int = 8,
        dropout: float = 0.0,
        small_input: bool = True,
        in_channels: int = 1,
        standardize_input: bool = True,
    ):
        super().__init__(num_classes, width, in_channels, standardize_input)
        name, width = type(self).__name__, self.width
        middle_repeats = check_positive_int(name, "middle_repeats", middle_repeats, minimum=0)
        check_dropout(name, dropout)
        c = {n: scaled(n, width) for n in (32, 64, 128, 256, 728, 1024, 1536, 2048)}

        self.small_input = bool(small_input)
        self.stem = nn.Sequential(
            nn.Conv2d(self.in_channels, c[32], 3, stride=1 if self.small_input else 2, padding=1, bias=False),
            nn.BatchNorm2d(c[32]),
            nn.ReLU(inplace=True),
            nn.Conv2d(c[32], c[64], 3, padding=1, bias=False),
            nn.BatchNorm2d(c[64]),
            nn.ReLU(inplace=True),
        )
        self.entry = nn.Sequential(
            XceptionModule(c[64], (c[128], c[128]), downsample=True, start_with_relu=False),
            XceptionModule(c[128], (c[256], c[256]), downsample=True),
            XceptionModule(c[256], (c[728], c[728]), downsample=True),
        )
        self.middle = nn.Sequential(
            *[XceptionModule(c[728], (c[728],) * 3, downsample=False) for _ in range(middle_repeats)]
        )
        self.exit = nn.Sequential(
            XceptionModule(c[728], (c[728], c[1024]), downsample=True),
            SeparableConv2d(c[1024], c[1536]),
            nn.BatchNorm2d(c[1536]),
            nn.ReLU(inplace=True),
            SeparableConv2d(c[1536], c[2048]),
            nn.BatchNorm2d(c[2048]),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = c[2048]
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c[2048], self.num_classes))
        init_conv_bn(self)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.exit(self.middle(self.entry(self.stem(x))))
        return torch.flatten(self.pool(x), 1)
