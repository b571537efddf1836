"""SRResNet (Ledig et al. 2017, the SRGAN generator) for grayscale images.

9x9 head conv + PReLU; ``num_blocks`` residual blocks (conv3-BN-PReLU-conv3-BN + skip);
conv3 + BN with a long skip from the head; sub-pixel upsampling stages
(conv3 -> PixelShuffle(r) -> PReLU: log2(scale) x2 stages, or one x3 stage); 9x9 tail conv.
"""

from __future__ import annotations

import torch
from torch import nn

from karyosr.archs._common import bicubic_up, check_scale

UPSAMPLE_STAGES = {2: (2,), 3: (3,), 4: (2, 2), 8: (2, 2, 2)}


class ResidualBlock(nn.Module):
    def __init__(self, num_features: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1),
            nn.BatchNorm2d(num_features),
            nn.PReLU(),
            nn.Conv2d(num_features, num_features, 3, padding=1),
            nn.BatchNorm2d(num_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """SRResNet generator.

    Args:
        scale: 2, 3, 4 or 8.
        num_blocks: residual blocks (published: 16).
        num_features: width (published: 64).
        bicubic_residual: predict the difference to the bicubic upsampling instead of the image
            (off in the published network). With it the untrained network starts at bicubic
            quality, which is what lets the short CPU demo runs improve on it; full-length training
            converges either way.

    Input ``(N, 1, h, w)``; output ``(N, 1, h*scale, w*scale)``, not clamped. Contains
    BatchNorm, so call ``.eval()`` for inference.
    """

    SCALES = tuple(UPSAMPLE_STAGES)

    def __init__(self, scale: int, num_blocks: int = 16, num_features: int = 64, num_in_ch: int = 1,
                 bicubic_residual: bool = False):
        super().__init__()
        self.bicubic_residual = bicubic_residual
        self.scale = check_scale(type(self).__name__, scale, self.SCALES)
        nf = num_features
        self.head = nn.Sequential(nn.Conv2d(num_in_ch, nf, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(*[ResidualBlock(nf) for _ in range(num_blocks)])
        self.body_tail = nn.Sequential(nn.Conv2d(nf, nf, 3, padding=1), nn.BatchNorm2d(nf))
        stages = []
        for r in UPSAMPLE_STAGES[self.scale]:
            stages += [nn.Conv2d(nf, nf * r * r, 3, padding=1), nn.PixelShuffle(r), nn.PReLU()]
        self.upsample = nn.Sequential(*stages)
        self.tail = nn.Conv2d(nf, num_in_ch, 9, padding=4)
        if bicubic_residual:
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        feat = feat + self.body_tail(self.body(feat))
        out = self.tail(self.upsample(feat))
        return out + bicubic_up(x, self.scale) if self.bicubic_residual else out
