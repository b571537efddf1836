"""SRCNN-style residual reconstruction layers (the three SR layers of Super-Xception).

The LR image is upsampled by bicubic interpolation inside the module; three convolutions
(9x9x64 + ReLU, 5x5x32 + ReLU, 5x5x1 with the published defaults, all with "same" padding)
predict a residual that is added back to the bicubic image.
"""

from __future__ import annotations

import torch
from torch import nn

from karyosr.archs._common import bicubic_up, check_scale, start_at_skip


class SRCNN(nn.Module):
    """Bicubic upsampling + residual SRCNN.

    Args:
        scale: upsampling factor (2, 3, 4 or 8).
        channels: widths of the first two convolutions (published: 64, 32).
        kernels: kernel sizes of the three convolutions (published: 9, 5, 5); odd sizes only,
            padding is ``k // 2`` so the spatial size is kept.

    Input ``(N, 1, h, w)`` in [0, 1]; output ``(N, 1, h*scale, w*scale)``, not clamped.
    """

    SCALES = (2, 3, 4, 8)

    def __init__(self, scale: int, channels=(64, 32), kernels=(9, 5, 5), num_in_ch: int = 1):
        super().__init__()
        self.scale = check_scale(type(self).__name__, scale, self.SCALES)
        if len(channels) != 2 or len(kernels) != 3:
            raise ValueError("SRCNN: channels needs 2 widths and kernels 3 sizes")
        if any(k % 2 == 0 for k in kernels):
            raise ValueError(f"SRCNN: kernel sizes must be odd for 'same' padding, got {tuple(kernels)}")
        c1, c2 = channels
        k1, k2, k3 = kernels
        self.body = nn.Sequential(
            nn.Conv2d(num_in_ch, c1, k1, padding=k1 // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, k2, padding=k2 // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c2, num_in_ch, k3, padding=k3 // 2),
        )
        start_at_skip(self.body[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = bicubic_up(x, self.scale)
        return up + self.body(up)
