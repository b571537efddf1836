"""DCNN: the "traditional deep CNN" baseline of the Super-Xception chromosome classification paper.

Six 3x3 convolutions (same padding) with 16, 16, 32, 64, 128, 256 filters, each followed by
ReLU and a 2x2 max-pool; global average pooling; dense 1024 and 512 with sigmoid activations;
a ``num_classes``-way output layer (softmax left to the loss, so ``forward`` returns logits).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from karyosr.classify.backbones._common import Backbone, check_positive_int, scaled

DCNN_FILTERS = (16, 16, 32, 64, 128, 256)
DCNN_HIDDEN = (1024, 512)


class DCNN(Backbone):
    """Six-conv baseline CNN.

    Args:
        num_classes: output logits (24: chromosomes 1-22, X, Y).
        width: multiplies every filter count and both dense sizes (each at least 4).
        depth: number of conv layers used, 1-6 (the first ``depth`` of ``filters``; published 6).
        filters: conv filter counts (published 16, 16, 32, 64, 128, 256).
        hidden: dense layer sizes before the output (published 1024, 512), sigmoid-activated.
        in_channels: 1 (grayscale).
        standardize_input: standardise each image first (see :class:`Backbone`).

    The max-pools use ``ceil_mode=True``, so a map of odd size (or already 1x1) is pooled to
    ``ceil(size / 2)`` instead of shrinking to nothing; the six pools have total stride 64, and a
    64x64 input ends at 1x1, a 128x80 one at 2x2. The paper's exact flattening size is not
    reproducible for arbitrary input sizes, so the last conv map is average pooled to 1x1
    (``num_features`` of the flattened vector = last filter count) before the dense layers.

    Minimum input size: 32x32 (enforced; smaller inputs raise ValueError). ``features(x)`` is the
    512-d (``hidden[-1]``) sigmoid output of the last dense layer, so it lies in (0, 1).
    Published size: about 1.2 M parameters for 24 classes.
    """

    def __init__(
        self,
        num_classes: int = 24,
        width: float = 1.0,
        depth: int = 6,
        filters: Sequence[int] = DCNN_FILTERS,
        hidden: Sequence[int] = DCNN_HIDDEN,
        in_channels: int = 1,
        standardize_input: bool = True,
    ):
        super().__init__(num_classes, width, in_channels, standardize_input)
        name, width = type(self).__name__, self.width
        filters = [check_positive_int(name, "filters", f) for f in filters]
        depth = check_positive_int(name, "depth", depth)
        if depth > len(filters):
            raise ValueError(f"{name}: depth {depth} exceeds the {len(filters)} conv layers of filters={filters}")
        hidden = [check_positive_int(name, "hidden", h) for h in hidden]

        layers: list[nn.Module] = []
        cin = self.in_channels
        for f in filters[:depth]:
            cout = scaled(f, width)
            layers += [
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, 2, ceil_mode=True),
            ]
            cin = cout
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        dense: list[nn.Module] = []
        for h in hidden:
            hout = scaled(h, width)
            dense += [nn.Linear(cin, hout), nn.Sigmoid()]
            cin = hout
        self.dense = nn.Sequential(*dense)
        self.num_features = cin
        self.classifier = nn.Linear(cin, self.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """He init for the ReLU convolutions, Glorot for the sigmoid dense layers.

        Under torch's default init (uniform, gain 1/sqrt(3)) each ReLU conv + max-pool passes on
        about a third of its input's scale, so after six of them the dense layers see inputs
        near 0, every sigmoid sits at 0.5 whatever the image, and the network stays at chance
        (measured on G-band: 4.6 % after 10 epochs, 39.5 % with this init). The architecture is
        the published one; only the starting weights differ.
        """
        for m in self.body.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for m in self.dense.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(torch.flatten(self.pool(self.body(x)), 1))
