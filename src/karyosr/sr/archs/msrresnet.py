"""BasicSR's MSRResNet (modified SRResNet, Wang et al. 2018), the published network as BasicSR
defines it, so that its published ``.pth`` files run as they are (karyosr.sr.published).

It differs from this project's SRResNet (karyosr.sr.archs.srresnet), which follows SRGAN's paper:
3x3 first and last convolutions with LeakyReLU 0.1, residual blocks conv-ReLU-conv without
BatchNorm and without a long skip, sub-pixel steps with LeakyReLU, and a bilinear image skip.
Parameter names are BasicSR's but for the upsampling convolutions, ``conv_up1``/``conv_up2``
instead of ``upconv1``/``upconv2``: :func:`karyosr.sr.archs.rrdbnet.rename_legacy_esrgan_keys`
renames those already (the original ESRGAN repository used the same names), so BasicSR files
load through the same mapping as ESRGAN ones, 3-channel ones reduced to grey alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from karyosr.sr.archs._common import check_scale

# sub-pixel steps per scale, as BasicSR builds them (x4: two x2 steps)
UPSAMPLE_STEPS = {2: (2,), 3: (3,), 4: (2, 2)}


class ResidualBlockNoBN(nn.Module):
    def __init__(self, num_feat: int):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class MSRResNet(nn.Module):
    """BasicSR's MSRResNet: ``scale`` 2, 3 or 4, ``num_feat`` (published 64), ``num_block``
    (published 16), ``num_in_ch``/``num_out_ch`` (1 here; published files are RGB and are reduced
    to grey when loaded). Output ``(N, num_out_ch, h*scale, w*scale)``, not clamped."""

    SCALES = tuple(UPSAMPLE_STEPS)

    def __init__(self, scale: int, num_in_ch: int = 1, num_out_ch: int = 1, num_feat: int = 64, num_block: int = 16):
        super().__init__()
        self.scale = check_scale(type(self).__name__, scale, self.SCALES)
        self.steps = UPSAMPLE_STEPS[self.scale]
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat) for _ in range(num_block)])
        for i, r in enumerate(self.steps):
            setattr(self, f"conv_up{i + 1}", nn.Conv2d(num_feat, num_feat * r * r, 3, 1, 1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = F.leaky_relu(self.conv_first(x), 0.1)
        out = self.body(feat)
        for i, r in enumerate(self.steps):
            out = F.leaky_relu(F.pixel_shuffle(getattr(self, f"conv_up{i + 1}")(out), r), 0.1)
        out = self.conv_last(F.leaky_relu(self.conv_hr(out), 0.1))
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
