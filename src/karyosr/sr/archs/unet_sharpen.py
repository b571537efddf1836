"""A small U-Net that sharpens an image already at the target size (residual output).

Feed it a bicubic-upsampled LR image (or any blurred image); it returns an image of the same
size: ``x + unet(x)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from karyosr.sr.archs._common import start_at_skip


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class UNetSharpen(nn.Module):
    """Residual U-Net, same size in and out.

    Encoder: ``depth`` levels of (conv3-ReLU-conv3-ReLU) then 2x2 max-pool (widths
    c, 2c, 4c, ...), a bottleneck double conv at 1/2**depth (1/8 for depth 3); decoder: upsample
    x2 (``upsample="bilinear"`` or ``"nearest"``), concatenate the skip, double conv; a 1x1 conv to
    one channel gives the residual added to the input; ``input_shift`` is subtracted from what the
    U-Net sees, not from the image the residual is added to (see :mod:`karyosr.sr.archs`). Inputs of any size are padded
    internally (replicate, bottom/right) to a multiple of 2**depth and the output is cropped back.

    Attributes: ``input_upsampled = True`` (the caller upsamples first); ``scale`` is set by
    :func:`karyosr.sr.archs.build_sr` to the factor of that upstream upsampling (1 otherwise).
    """

    input_upsampled = True

    def __init__(self, num_feat: int = 32, depth: int = 3, upsample: str = "bilinear", num_in_ch: int = 1,
                 input_shift: float = 0.0):
        super().__init__()
        self.input_shift = float(input_shift)
        if depth < 1:
            raise ValueError("UNetSharpen: depth must be >= 1")
        if upsample not in ("bilinear", "nearest"):
            raise ValueError(f"UNetSharpen: upsample must be 'bilinear' or 'nearest', got {upsample!r}")
        self.depth = depth
        self.upsample = upsample
        self.scale = 1
        widths = [num_feat * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList()
        cin = num_in_ch
        for w in widths[:-1]:
            self.encoders.append(_double_conv(cin, w))
            cin = w
        self.bottleneck = _double_conv(widths[-2], widths[-1])
        self.decoders = nn.ModuleList(_double_conv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.out = nn.Conv2d(widths[0], num_in_ch, 1)
        # He init for the ReLU convolutions: PyTorch's default shrinks the activations ~1.6x per
        # layer, ~20x through the encoder at depth 3, and the untrained U-Net then barely moved
        # off its input in 100 toy steps. The head starts at a tenth so the output starts close to
        # the input (a default-init head started 1.5 dB below bicubic on G-band x4).
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        start_at_skip(self.out, gain=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        pad_h, pad_w = (-h) % m, (-w) % m
        y = x - self.input_shift if self.input_shift else x
        y = F.pad(y, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else y
        skips = []
        for enc in self.encoders:
            y = enc(y)
            skips.append(y)
            y = F.max_pool2d(y, 2)
        y = self.bottleneck(y)
        for dec, skip in zip(self.decoders, reversed(skips)):
            if self.upsample == "bilinear":
                y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            else:
                y = F.interpolate(y, size=skip.shape[-2:], mode="nearest")
            y = dec(torch.cat([y, skip], 1))
        return x + self.out(y)[..., :h, :w]
