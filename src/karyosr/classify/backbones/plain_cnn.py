"""Plain CNN: the project's own small reference classifier, not a published architecture.

Four stages of two 3x3 convolutions (no bias) + BatchNorm + ReLU, 16, 32, 64 and 128 filters,
a 2x2 max-pool between stages (total stride 8), global average pooling, dropout and one linear
layer. It is the "plain reference" every published backbone is compared with in the same run:
if a published network trains to less than this, the recipe is at fault, not the data. On the
G-band chromosomes (48 px, x4) it reaches the accuracy of a quarter-width ResNet-18 in a fraction
of the CPU time (benchmarks/README.md).
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
    conv_bn_relu,
    init_conv_bn,
    scaled,
)

PLAIN_CNN_FILTERS = (16, 32, 64, 128)


class PlainCNN(Backbone):
    """The plain reference network.

    Args:
        num_classes: output logits (24: chromosomes 1-22, X, Y).
        width: multiplies every filter count (each at least 4).
        filters: filters of each stage (default 16, 32, 64, 128); one max-pool between stages.
        convs_per_stage: 3x3 conv + BN + ReLU layers in each stage (default 2).
        dropout: before the linear layer (default 0.3).
        in_channels: 1 (grayscale).
        standardize_input: standardise each image first (see :class:`Backbone`).

    ``features(x)`` is the globally pooled output of the last stage (``filters[-1] * width``).
    """

    def __init__(
        self,
        num_classes: int = 24,
        width: float = 1.0,
        filters: Sequence[int] = PLAIN_CNN_FILTERS,
        convs_per_stage: int = 2,
        dropout: float = 0.3,
        in_channels: int = 1,
        standardize_input: bool = True,
    ):
        super().__init__(num_classes, width, in_channels, standardize_input)
        name = type(self).__name__
        if isinstance(filters, (str, bytes)) or not isinstance(filters, Sequence) or not filters:
            raise ValueError(f"{name}: filters must be a non-empty list of ints, got {filters!r}")
        filters = check_int_list(name, "filters", filters, len(filters))
        convs_per_stage = check_positive_int(name, "convs_per_stage", convs_per_stage)
        layers: list[nn.Module] = []
        cin = self.in_channels
        for stage, f in enumerate(filters):
            if stage:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            cout = scaled(f, self.width)
            for _ in range(convs_per_stage):
                layers.append(conv_bn_relu(cin, cout, 3, padding=1))
                cin = cout
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = cin
        self.classifier = nn.Sequential(nn.Dropout(check_dropout(name, dropout)), nn.Linear(cin, self.num_classes))
        init_conv_bn(self.body)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.body(x)), 1)
