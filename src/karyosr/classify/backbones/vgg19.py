"""VGG-19 (Simonyan & Zisserman 2015, configuration "E") for grayscale chromosome images.

Sixteen 3x3 convolutions (same padding) in five blocks of 64, 64 | 128, 128 | 256 x4 | 512 x4 |
512 x4 filters, each conv followed by (BatchNorm and) ReLU, a 2x2 stride-2 max-pool after every
block; adaptive average pooling; dense 4096 - ReLU - dropout - 4096 - ReLU - dropout - output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from karyosr.classify.backbones._common import (
    Backbone,
    check_dropout,
    check_int_list,
    check_positive_int,
    init_conv_bn,
    scaled,
)

VGG19_WIDTHS = (64, 128, 256, 512, 512)
VGG19_DEPTH = (2, 2, 4, 4, 4)


class VGG19(Backbone):
    """VGG-19.

    Args:
        num_classes: output logits.
        width: multiplies every conv width and the two dense sizes (each at least 4).
        depth: convs per block (5 ints; published 2, 2, 4, 4, 4).
        batch_norm: BatchNorm after every conv (default True, i.e. the "VGG19-BN" variant; the
            2015 paper had none, but these networks are trained from scratch on chromosomes, and
            without BN a 19-layer plain network trains poorly from random initialisation).
        pool_size: side of the adaptive average pooling before the dense layers. Default 1
            (global average pooling: 512 features into the first dense layer). The published head
            pools to 7x7 (25088 inputs, 103 M parameters in the first dense layer alone); with
            64-128 px chromosomes the last map is only 2x2 to 4x4, so 7x7 would merely replicate
            pixels. Pass ``pool_size=7`` for the published head.
        hidden: dense sizes (published 4096), scaled by ``width``.
        dropout: dropout probability after each hidden dense layer (published 0.5).
        in_channels: 1 (grayscale).
        standardize_input: standardise each image first (see :class:`Backbone`).

    ``features(x)`` is the output of the second hidden dense layer after ReLU (before its dropout),
    ``num_features = hidden * width``; ``classifier`` = dropout + the output layer.

    Minimum input size: 32x32 — a hard limit here, since the five unpadded 2x2 max-pools need at
    least 32 px to leave a 1x1 map (smaller inputs raise ValueError). Published size with the
    default ``pool_size=1``: 39.0 M parameters (24 classes); with ``pool_size=7``: 139.7 M.
    """

    def __init__(
        self,
        num_classes: int = 24,
        width: float = 1.0,
        depth: Sequence[int] = VGG19_DEPTH,
        batch_norm: bool = True,
        pool_size: int = 1,
        hidden: int = 4096,
        dropout: float = 0.5,
        in_channels: int = 1,
        standardize_input: bool = True,
    ):
        super().__init__(num_classes, width, in_channels, standardize_input)
        name, width = type(self).__name__, self.width
        depth = check_int_list(name, "depth", depth, 5)
        pool_size = check_positive_int(name, "pool_size", pool_size)
        hidden = scaled(check_positive_int(name, "hidden", hidden), width)
        check_dropout(name, dropout)

        layers: list[nn.Module] = []
        cin = self.in_channels
        for base, convs in zip(VGG19_WIDTHS, depth):
            cout = scaled(base, width)
            for _ in range(convs):
                layers.append(nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(cout))
                layers.append(nn.ReLU(inplace=True))
                cin = cout
            layers.append(nn.MaxPool2d(2, 2))
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.head = nn.Sequential(
            nn.Linear(cin * pool_size * pool_size, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
        )
        self.num_features = hidden
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, self.num_classes))
        init_conv_bn(self.body)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.body(x)), 1))
