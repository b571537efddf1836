"""SRCNN layers (Dong et al. 2014) in a VDSR-style residual VARIANT: the three SR layers of
Super-Xception.

The LR image is upsampled by bicubic interpolation inside the module; three convolutions
(9x9x64 + ReLU, 5x5x32 + ReLU, 5x5x1 with the published defaults) map it to an image. The
published SRCNN predicts the HR image itself with unpadded ("valid") convolutions, so its output
is 12 px smaller than its input. By default this module is a VARIANT of it in the manner of VDSR
(Kim et al. 2016): "same" padding (the output keeps the HR size) and a global residual, i.e. the
layers predict the difference to the bicubic image, which is added back. ``residual=False``
gives SRCNN's plain mapping (still with same padding, the size the SR contract needs).
"""

from __future__ import annotations

import torch
from torch import nn

from karyosr.sr.archs._common import bicubic_up, check_scale, start_at_skip


class SRCNN(nn.Module):
    """Bicubic upsampling + SRCNN layers; by default the VDSR-style residual variant.

    Args:
        scale: upsampling factor (1 for restoration at native size, 2, 3, 4 or 8).
        channels: widths of the first two convolutions (published: 64, 32).
        kernels: kernel sizes of the three convolutions (published: 9, 5, 5); odd sizes only,
            padding is ``k // 2`` so the spatial size is kept.
        residual: add the bicubic image to the layers' output (VDSR-style variant, default);
            False: the layers predict the image (SRCNN's mapping, same padding).
        input_shift: grey value subtracted from the bicubic image before the first layer (0, the
            default, feeds it unchanged as SRCNN does; 0.5 centres [0, 1] images; without the
            residual the shift is added back to the output). Use 0.5 on white-background crops:
            uncentred, every ReLU of the second layer died within the first 50 Adam steps (48 px
            G-band x4, lr 1e-3), so the residual stayed at exactly zero and the model equalled its
            bicubic skip however long it trained; centred, 80 % of them stayed alive and 200 steps
            gained 3.2 dB inside the chromosome.

    The last layer starts at a tenth of its default init when ``residual`` (the model starts close
    to bicubic). Input ``(N, 1, h, w)`` in [0, 1]; output ``(N, 1, h*scale, w*scale)``, not clamped.
    """

    SCALES = (1, 2, 3, 4, 8)  # x1: restoration at native size (the skip is the input itself)

    def __init__(self, scale: int, channels=(64, 32), kernels=(9, 5, 5), num_in_ch: int = 1, residual: bool = True,
                 input_shift: float = 0.0):
        super().__init__()
        self.scale = check_scale(type(self).__name__, scale, self.SCALES)
        if len(channels) != 2 or len(kernels) != 3:
            raise ValueError("SRCNN: channels needs 2 widths and kernels 3 sizes")
        if any(k % 2 == 0 for k in kernels):
            raise ValueError(f"SRCNN: kernel sizes must be odd for 'same' padding, got {tuple(kernels)}")
        self.residual = residual
        self.input_shift = float(input_shift)
        c1, c2 = channels
        k1, k2, k3 = kernels
        self.body = nn.Sequential(
            nn.Conv2d(num_in_ch, c1, k1, padding=k1 // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, k2, padding=k2 // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c2, num_in_ch, k3, padding=k3 // 2),
        )
        if residual:
            start_at_skip(self.body[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = bicubic_up(x, self.scale)
        out = self.body(up - self.input_shift if self.input_shift else up)
        if self.residual:
            return up + out
        return out + self.input_shift if self.input_shift else out
