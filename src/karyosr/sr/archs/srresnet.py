"""SRResNet (Ledig et al. 2017, the SRGAN generator) for grayscale images.

9x9 head conv + PReLU; ``num_block`` residual blocks (conv3-BN-PReLU-conv3-BN + skip);
conv3 + BN with a long skip from the head; sub-pixel upsampling stages
(conv3 -> PixelShuffle(r) -> PReLU: log2(scale) x2 stages, or one x3 stage); 9x9 tail conv.

``batch_norm=False`` with ``bicubic_residual=True`` is the MSRResNet-style VARIANT (BasicSR's
modified SRResNet, EDSR's blocks): no BatchNorm, residual branches starting at a tenth of their
Kaiming init, and an image skip, here bicubic rather than MSRResNet's bilinear.
"""

from __future__ import annotations

import torch
from torch import nn

from karyosr.sr.archs._common import bicubic_up, check_scale

# x1 (restoration at native size) has no upsampling stage.
UPSAMPLE_STAGES = {1: (), 2: (2,), 3: (3,), 4: (2, 2), 8: (2, 2, 2)}


def _norm(num_feat: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(num_feat) if batch_norm else nn.Identity()


class ResidualBlock(nn.Module):
    def __init__(self, num_feat: int, batch_norm: bool = True):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_feat, num_feat, 3, padding=1),
            _norm(num_feat, batch_norm),
            nn.PReLU(),
            nn.Conv2d(num_feat, num_feat, 3, padding=1),
            _norm(num_feat, batch_norm),
        )
        if not batch_norm:
            # Without BN nothing rescales the branch: start each block near the identity
            # (BasicSR's default_init_weights(..., 0.1) in its BN-free residual blocks).
            for conv in (self.body[0], self.body[3]):
                nn.init.kaiming_normal_(conv.weight)
                conv.weight.data.mul_(0.1)
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """SRResNet generator.

    Args:
        scale: 1 (restoration at native size), 2, 3, 4 or 8.
        num_block: residual blocks (published: 16).
        num_feat: width (published: 64).
        bicubic_residual: predict the difference to the bicubic upsampling instead of the image
            (off in the published network). With it the untrained network starts at bicubic
            quality, which is what lets the short CPU demo runs improve on it; full-length training
            converges either way.
        batch_norm: BatchNorm in the residual blocks and after the body (published). False drops it
            (the MSRResNet / EDSR variant, see the module docstring). Measured on 48 px G-band x4
            (8 x 64, bicubic residual, input shifted by 0.5, lr 2e-3, 200 CPU steps): +3.4 dB over
            bicubic with BatchNorm, +4.4 dB without; batches of 16 small, mostly white crops give
            noisy batch statistics, and inference uses running averages of them.
        input_shift: grey value subtracted from the input before the first convolution (EDSR's
            MeanShift with one value); the bicubic skip still adds the unshifted image. 0 = none
            (published); 0.5 centres [0, 1] images.

    Input ``(N, 1, h, w)``; output ``(N, 1, h*scale, w*scale)``, not clamped. With BatchNorm
    call ``.eval()`` for inference.
    """

    SCALES = tuple(UPSAMPLE_STAGES)

    def __init__(self, scale: int, num_block: int = 16, num_feat: int = 64, num_in_ch: int = 1,
                 bicubic_residual: bool = False, batch_norm: bool = True, input_shift: float = 0.0):
        super().__init__()
        self.input_shift = float(input_shift)
        self.bicubic_residual = bicubic_residual
        self.batch_norm = batch_norm
        self.scale = check_scale(type(self).__name__, scale, self.SCALES)
        nf = num_feat
        self.head = nn.Sequential(nn.Conv2d(num_in_ch, nf, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(*[ResidualBlock(nf, batch_norm) for _ in range(num_block)])
        self.body_tail = nn.Sequential(nn.Conv2d(nf, nf, 3, padding=1), _norm(nf, batch_norm))
        stages = []
        for r in UPSAMPLE_STAGES[self.scale]:
            stages += [nn.Conv2d(nf, nf * r * r, 3, padding=1), nn.PixelShuffle(r), nn.PReLU()]
        self.upsample = nn.Sequential(*stages)
        self.tail = nn.Conv2d(nf, num_in_ch, 9, padding=4)
        if bicubic_residual:
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x - self.input_shift if self.input_shift else x)
        feat = feat + self.body_tail(self.body(feat))
        out = self.tail(self.upsample(feat))
        return out + bicubic_up(x, self.scale) if self.bicubic_residual else out
