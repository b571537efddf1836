"""ResNet-18 and ResNet-50 (He et al. 2016) for grayscale chromosome images.

a stem (default ``small_input=True``: one 3x3 conv of stride ``stem_stride`` (default 2) + BN +
ReLU, suited to 32-128 px chromosome crops; ``small_input=False``: the published ImageNet stem,
7x7 stride-2 conv + BN + ReLU + 3x3 stride-2 max-pool, which leaves a 48 px crop at 12x12 before
the first block); four stages of residual blocks with 64, 128, 256, 512 base widths,
stride 2 at the first block of stages 2-4 (1x1 stride-2 conv + BN on the shortcut whenever shape
changes); global average pooling; one dense layer.

* ResNet-18: basic blocks (3x3 - 3x3), ``[2, 2, 2, 2]``, 512-d features.
* ResNet-50: bottleneck blocks (1x1 - 3x3 - 1x1, expansion 4), ``[3, 4, 6, 3]``, 2048-d features.
  The stride sits on the 3x3 conv (the common "v1.5" placement; the paper strides the first
  1x1); parameter counts are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from karyosr.classify.backbones._common import Backbone, check_int_list, init_conv_bn, scaled


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(cin, cout, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(cin, cout, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(Backbone):
    """Generic ResNet (block type and default depth are class attributes); use :class:`ResNet18`
    / :class:`ResNet50`.

    Args:
        depth: residual blocks per stage (4 ints).
        num_classes: output logits.
        width: multiplies the stage widths 64/128/256/512 (and the stem), each at least 4.
        small_input: a 3x3 stem conv of stride ``stem_stride`` without max-pool (total stride 16
            with the default stride 2, instead of 32): a 48 px crop reaches the first block at
            24x24 and the last at 3x3 (128 px: 8x8). Default True; False = the published
            ImageNet stem.
        stem_stride: 1 or 2, the small stem's stride. Stride 1 keeps the full 48 px map in the
            first stage at 4x the compute (G-band, 48 px, ResNet-18 x0.25: 850 vs ~210 ms per
            CPU step of 64 images).
        zero_init_residual: start the last BatchNorm of every residual block at zero (Goyal et al.
            2017), so each block starts as its shortcut and a deep network trains like a shallow
            one at first.
        in_channels: 1 (grayscale).
        standardize_input: standardise each image first (see :class:`Backbone`).

    Minimum input size: 32x32 (enforced). All strided layers are padded, so a 32x32 input ends at
    a 1x1 map (published stem) or 4x4 (``small_input``).
    """

    block: type[nn.Module] = BasicBlock
    default_depth: tuple[int, ...] = (2, 2, 2, 2)

    def __init__(
        self,
        num_classes: int = 24,
        width: float = 1.0,
        depth: Sequence[int] | None = None,
        small_input: bool = True,
        stem_stride: int = 2,
        zero_init_residual: bool = False,
        in_channels: int = 1,
        standardize_input: bool = True,
    ):
        super().__init__(num_classes, width, in_channels, standardize_input)
        name, width = type(self).__name__, self.width
        block = self.block
        depth = check_int_list(name, "depth", self.default_depth if depth is None else depth, 4)
        self.small_input = bool(small_input)
        if stem_stride not in (1, 2):
            raise ValueError(f"{name}: stem_stride must be 1 or 2, got {stem_stride!r}")

        stem_ch = scaled(64, width)
        if self.small_input:
            self.stem = nn.Sequential(
                nn.Conv2d(self.in_channels, stem_ch, 3, stride=stem_stride, padding=1, bias=False),
                nn.BatchNorm2d(stem_ch),
                nn.ReLU(inplace=True),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(self.in_channels, stem_ch, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(stem_ch),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        stages = []
        cin = stem_ch
        for i, blocks in enumerate(depth):
            planes = scaled(64 * 2**i, width)
            layers = []
            for j in range(blocks):
                layers.append(block(cin, planes, stride=2 if (i > 0 and j == 0) else 1))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = cin
        self.classifier = nn.Linear(cin, self.num_classes)
        init_conv_bn(self)
        if zero_init_residual:
            for stage in self.stages:
                for residual_block in stage:
                    nn.init.zeros_(residual_block.last_bn.weight)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)


class ResNet18(ResNet):
    """ResNet-18: basic blocks, ``depth=[2, 2, 2, 2]``, 512-d features (11.2 M parameters at
    published size for 1 channel / 24 classes). See :class:`ResNet` for the arguments."""

    block = BasicBlock
    default_depth = (2, 2, 2, 2)


class ResNet50(ResNet):
    """ResNet-50: bottleneck blocks, ``depth=[3, 4, 6, 3]``, 2048-d features (23.6 M parameters
    at published size for 1 channel / 24 classes). See :class:`ResNet` for the arguments."""

    block = Bottleneck
    default_depth = (3, 4, 6, 3)
