"""Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke & Alemi 2016) for grayscale chromosome images.

Layout and filter counts follow the widely used reference layout of the network (the one of the
Keras / TF-slim model, 55.8 M parameters for ImageNet; the paper's figures disagree with
themselves on some channel counts), every conv being conv + BN + ReLU:

* Stem: 3x3/2 32, 3x3 32, 3x3 64, max-pool 3x3/2, 1x1 80, 3x3 192, max-pool 3x3/2, then a
  mixed block [1x1 96 | 1x1 48 - 5x5 64 | 1x1 64 - 3x3 96 - 3x3 96 | avg-pool 3x3 - 1x1 64]
  -> 320 channels.
* Inception-ResNet-A x repeats[0] (scale 0.17): [1x1 32 | 1x1 32 - 3x3 32 | 1x1 32 - 3x3 48 -
  3x3 64] -> linear 1x1 back to 320, ``x + scale * branch``, ReLU.
* Reduction-A: [3x3/2 384 | 1x1 256 - 3x3 256 - 3x3/2 384 | max-pool 3x3/2] -> 1088.
* Inception-ResNet-B x repeats[1] (scale 0.10): [1x1 192 | 1x1 128 - 1x7 160 - 7x1 192] -> 1088.
* Reduction-B: [1x1 256 - 3x3/2 384 | 1x1 256 - 3x3/2 288 | 1x1 256 - 3x3 288 - 3x3/2 320 |
  max-pool 3x3/2] -> 2080.
* Inception-ResNet-C x repeats[2] (scale 0.20): [1x1 192 | 1x1 192 - 1x3 224 - 3x1 256] -> 2080.
* 1x1 conv 1536, global average pooling (1536-d features), dropout, dense.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from karyosr.classify.backbones._common import Backbone, check_dropout, check_int_list, init_conv_bn, scaled

BN_EPS = 1e-3  # as in the reference implementation
SCALES = (0.17, 0.10, 0.20)


def _conv(cin: int, cout: int, kernel, stride: int = 1) -> nn.Sequential:
    """Conv + BN + ReLU with "same" padding (odd kernels, also 1x7 / 7x1)."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return nn.Sequential(
        nn.Conv2d(cin, cout, (kh, kw), stride=stride, padding=(kh // 2, kw // 2), bias=False),
        nn.BatchNorm2d(cout, eps=BN_EPS),
        nn.ReLU(inplace=True),
    )


def _chain(cin: int, *specs) -> tuple[nn.Sequential, int]:
    """A chain of ``_conv`` layers from (cout, kernel[, stride]) specs; returns it and its output width."""
    layers = []
    for spec in specs:
        cout, kernel, stride = (*spec, 1) if len(spec) == 2 else spec
        layers.append(_conv(cin, cout, kernel, stride))
        cin = cout
    return nn.Sequential(*layers), cin


class Concat(nn.Module):
    """Runs branches on the same input and concatenates their outputs along channels."""

    def __init__(self, branches: Sequence[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class InceptionResNetBlock(nn.Module):
    """``relu(x + scale * up(concat(branches(x))))`` with ``up`` a linear 1x1 conv (with bias)
    mapping the concatenation back to the input width."""

    def __init__(self, cin: int, branches: Sequence[tuple[nn.Module, int]], scale: float):
        super().__init__()
        self.mixed = Concat([b for b, _ in branches])
        self.up = nn.Conv2d(sum(c for _, c in branches), cin, 1, bias=True)
        self.scale = scale
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.scale * self.up(self.mixed(x)))


def block_a(cin: int, c, scale: float) -> InceptionResNetBlock:
    return InceptionResNetBlock(cin, [
        _chain(cin, (c(32), 1)),
        _chain(cin, (c(32), 1), (c(32), 3)),
        _chain(cin, (c(32), 1), (c(48), 3), (c(64), 3)),
    ], scale)


def block_b(cin: int, c, scale: float) -> InceptionResNetBlock:
    return InceptionResNetBlock(cin, [
        _chain(cin, (c(192), 1)),
        _chain(cin, (c(128), 1), (c(160), (1, 7)), (c(192), (7, 1))),
    ], scale)


def block_c(cin: int, c, scale: float) -> InceptionResNetBlock:
    return InceptionResNetBlock(cin, [
        _chain(cin, (c(192), 1)),
        _chain(cin, (c(192), 1), (c(224), (1, 3)), (c(256), (3, 1))),
    ], scale)


def _mixed(cin: int, branches: Sequence[tuple[nn.Module, int]]) -> tuple[Concat, int]:
    return Concat([b for b, _ in branches]), sum(w for _, w in branches)


class InceptionResNetV2(Backbone):
    """Inception-ResNet-v2.

    Args:
        num_classes: output logits.
        width: multiplies every channel count, each at least 4.
        repeats: Inception-ResNet-A, -B, -C blocks (published figure: 5, 10, 5; the Keras /
            TF-slim model uses 10, 20, 10: 54.3 M parameters here for 1 channel / 24 classes). 0 allowed.
        small_input: the first stem conv gets stride 1 instead of 2 (total stride 16 instead of
            32), so a 48-128 px crop still reaches the last blocks as a 3x3 to 8x8 map. Default
            True; False = the published stem.
        dropout: dropout before the dense layer (published keep probability 0.8 -> 0.2).
        in_channels: 1 (grayscale).
        standardize_input: standardise each image first (see :class:`Backbone`).

    Padding: the reference implementation leaves the stem and reduction convs and pools unpadded
    ("valid"), which needs at least 75x75 inputs. Here every conv and pool is padded, so every
    stride-2 layer maps ``s`` to ``ceil(s / 2)``: with the published stem the total stride is 32
    (299 px -> 10x10, 128 px -> 4x4, 64 px -> 2x2, 32 px -> 1x1); with ``small_input`` it is 16
    (32 px -> 2x2). Parameter counts are unaffected by padding.

    Minimum input size: 32x32 (enforced; smaller inputs raise ValueError) in both modes. At least
    64x64 is recommended with the published stem (or ``small_input=True`` for 32-63 px) so the
    last blocks see a 2x2 map rather than a single position; with a 1x1 last map, training with
    batch size 1 fails in BatchNorm. Published size (repeats 5/10/5): 32.3 M parameters for
    1 channel / 24 classes.

    The C blocks all use scale 0.20 and ReLU (the reference implementation makes its last C block
    linear with scale 1.0; the 1x1 conv + BN + ReLU that follows makes that difference small).
    """

    def __init__(
        self,
        num_classes: int = 24,
        width: float = 1.0,
        repeats: Sequence[int] = (5, 10, 5),
        small_input: bool = True,
        dropout: float = 0.2,
        in_channels: int = 1,
        standardize_input: bool = True,
    ):
        super().__init__(num_classes, width, in_channels, standardize_input)
        name, width = type(self).__name__, self.width
        repeats = check_int_list(name, "repeats", repeats, 3, minimum=0)
        self.small_input = bool(small_input)
        check_dropout(name, dropout)

        def c(n: int) -> int:
            return scaled(n, width)

        stem_convs, cin = _chain(
            self.in_channels, (c(32), 3, 1 if self.small_input else 2), (c(32), 3), (c(64), 3)
        )
        stem_b, cb = _chain(cin, (c(80), 1), (c(192), 3))
        mixed_5b, cin = _mixed(cb, [
            _chain(cb, (c(96), 1)),
            _chain(cb, (c(48), 1), (c(64), 5)),
            _chain(cb, (c(64), 1), (c(96), 3), (c(96), 3)),
            (nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), _conv(cb, c(64), 1)), c(64)),
        ])
        self.stem = nn.Sequential(
            stem_convs,
            nn.MaxPool2d(3, stride=2, padding=1),
            stem_b,
            nn.MaxPool2d(3, stride=2, padding=1),
            mixed_5b,
        )
        self.blocks_a = nn.Sequential(*[block_a(cin, c, SCALES[0]) for _ in range(repeats[0])])
        self.reduction_a, cin = _mixed(cin, [
            _chain(cin, (c(384), 3, 2)),
            _chain(cin, (c(256), 1), (c(256), 3), (c(384), 3, 2)),
            (nn.MaxPool2d(3, stride=2, padding=1), cin),
        ])
        self.blocks_b = nn.Sequential(*[block_b(cin, c, SCALES[1]) for _ in range(repeats[1])])
        self.reduction_b, cin = _mixed(cin, [
            _chain(cin, (c(256), 1), (c(384), 3, 2)),
            _chain(cin, (c(256), 1), (c(288), 3, 2)),
            _chain(cin, (c(256), 1), (c(288), 3), (c(320), 3, 2)),
            (nn.MaxPool2d(3, stride=2, padding=1), cin),
        ])
        self.blocks_c = nn.Sequential(*[block_c(cin, c, SCALES[2]) for _ in range(repeats[2])])
        self.conv_last, cin = _chain(cin, (c(1536), 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = cin
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, self.num_classes))
        init_conv_bn(self)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks_a(self.stem(x))
        x = self.blocks_b(self.reduction_a(x))
        x = self.blocks_c(self.reduction_b(x))
        return torch.flatten(self.pool(self.conv_last(x)), 1)
