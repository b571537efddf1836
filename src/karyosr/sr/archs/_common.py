"""Small helpers shared by the architecture files (no layers live here)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def check_scale(cls_name: str, scale, supported) -> int:
    """Return ``scale`` as an int, or raise ValueError naming the supported factors."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in supported:
        raise ValueError(f"{cls_name}: unsupported scale {scale!r}; supported scales: {sorted(supported)}")
    return int(scale)


def bicubic_up(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling to exactly ``scale`` times the input size (works at odd sizes)."""
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(h * scale, w * scale), mode="bicubic", align_corners=False)


@torch.no_grad()
def start_at_skip(conv: nn.Conv2d, gain: float = 0.1) -> None:
    """Shrink the last convolution of a residual branch added to a bicubic skip, so training
    starts close to bicubic. A full-size random head adds a residual of ~10 grey levels that
    must first be unlearnt (and, in front of a classifier, pushes most pixels out of [0, 1]);
    a zero head would block the gradient to everything before it."""
    conv.weight.mul_(gain)
    conv.bias.zero_()
