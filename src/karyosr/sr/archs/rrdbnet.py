"""ESRGAN's RRDBNet (Wang et al. 2018) with the public ESRGAN / Real-ESRGAN state-dict layout.

Parameter names follow the public checkpoints (e.g. ``RRDB_ESRGAN_x4.pth`` in its
BasicSR-converted form, ``RealESRGAN_x4plus.pth``)::

    conv_first
    body.<i>.rdb1..rdb3.conv1..conv5     (Residual-in-Residual Dense Blocks)
    conv_body
    conv_up1, conv_up2                   (nearest x2 upsampling + conv, then LeakyReLU 0.2)
    conv_hr, conv_last

Scale decisions (read before loading public files):

* x4: exactly the public x4 layout, so public x4 checkpoints load unchanged (3-channel ones
  after :func:`adapt_rgb_state_dict`, which :func:`karyosr.sr.archs.load_weights` applies itself).
* x2: ONE nearest-x2 + ``conv_up1`` step; there is no ``conv_up2``. Real-ESRGAN's public x2
  model instead pixel-unshuffles the input (``conv_first`` then takes 4x the channels) and keeps
  both x2 steps; that layout needs even input sizes and is NOT supported here. A public x4
  checkpoint can initialise an x2 model: every tensor except ``conv_up2.*`` fits, so
  ``load_weights(model, path, strict=False)`` loads it and reports ``conv_up2.*`` as unexpected.
* x3: one nearest-x3 step + ``conv_up1``. x8: three x2 steps ``conv_up1..conv_up3``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from karyosr.sr.archs._common import bicubic_up, check_scale, start_at_skip
from karyosr.weights import unwrap_state_dict

# x1 (restoration at native size, the noisy-in, clean-out fine-tuning) has no upsampling step.
UPSAMPLE_STEPS = {1: (), 2: (2,), 3: (3,), 4: (2, 2), 8: (2, 2, 2)}


def _scaled_kaiming_(module: nn.Module, factor: float) -> None:
    """Kaiming-normal init scaled by ``factor`` (ESRGAN's smaller init for deep residual nets)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            m.weight.data.mul_(factor)
            if m.bias is not None:
                m.bias.data.zero_()


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; the output is scaled by ``res_scale`` and added to the input."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32, res_scale: float = 0.2):
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        _scaled_kaiming_(self, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(self.lrelu(conv(torch.cat(feats, 1))))
        return x + self.res_scale * self.conv5(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual in Residual Dense Block: three RDBs with an outer scaled residual."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32, res_scale: float = 0.2):
        super().__init__()
        self.res_scale = res_scale
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch, res_scale)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch, res_scale)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch, res_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN generator.

    Args:
        scale: 1 (restoration), 2, 3, 4 or 8 (see the module docstring for how x2/x3/x8 map onto the layout).
        num_in_ch, num_out_ch: image channels (1 for this project; 3 for the public RGB files).
        num_feat, num_block, num_grow_ch: published 64, 23, 32.
        res_scale: residual scaling inside RDBs and RRDBs (published 0.2).
        bicubic_residual: a VARIANT, off in the published network: the output is added to the
            bicubic-upsampled input and ``conv_last`` starts at a tenth of its init, so the
            untrained network starts at bicubic quality and learns only the difference (as
            BasicSR's MSRResNet does with its bilinear skip). The published form must first learn
            to reproduce the image itself: from an almost black start on these white-background
            crops it stayed below bicubic after 300 CPU steps (25.6 vs 27.7 dB on 48 px G-band x4)
            while its gradient norm was clipped at 1.0 in 81 % of the steps. Parameter names are
            unchanged, so public checkpoints still load, but a public network trained without the
            skip adds the bicubic image twice: load those into the published form.
        input_shift: grey value subtracted from the input before the first convolution (EDSR's
            MeanShift with one value); the bicubic skip still adds the unshifted image. 0 = none
            (published; keep 0 for public checkpoints); 0.5 centres [0, 1] images.

    Output ``(N, num_out_ch, h*scale, w*scale)``, not clamped.
    """

    SCALES = tuple(UPSAMPLE_STEPS)

    def __init__(
        self,
        scale: int,
        num_in_ch: int = 1,
        num_out_ch: int = 1,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        res_scale: float = 0.2,
        bicubic_residual: bool = False,
        input_shift: float = 0.0,
    ):
        super().__init__()
        self.input_shift = float(input_shift)
        self.scale = check_scale(type(self).__name__, scale, self.SCALES)
        self.bicubic_residual = bicubic_residual
        self.steps = UPSAMPLE_STEPS[self.scale]
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch, res_scale) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        for i in range(len(self.steps)):
            setattr(self, f"conv_up{i + 1}", nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        if bicubic_residual:
            start_at_skip(self.conv_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x - self.input_shift if self.input_shift else x)
        feat = feat + self.conv_body(self.body(feat))
        for i, r in enumerate(self.steps):
            feat = F.interpolate(feat, scale_factor=r, mode="nearest")
            feat = self.lrelu(getattr(self, f"conv_up{i + 1}")(feat))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out + bicubic_up(x, self.scale) if self.bicubic_residual else out


_LEGACY_NAMES = (
    ("RRDB_trunk.", "body."),
    (".RDB1.", ".rdb1."),
    (".RDB2.", ".rdb2."),
    (".RDB3.", ".rdb3."),
    ("trunk_conv.", "conv_body."),
    ("upconv1.", "conv_up1."),
    ("upconv2.", "conv_up2."),
    ("HRconv.", "conv_hr."),
)


def rename_legacy_esrgan_keys(state_dict: Mapping) -> dict:
    """Map the original ESRGAN repository's names (``RRDB_trunk.<i>.RDB1``, ``trunk_conv``,
    ``upconv1/2``, ``HRconv``) onto the BasicSR / Real-ESRGAN names used here; other keys pass."""
    out = {}
    for key, value in state_dict.items():
        for old, new in _LEGACY_NAMES:
            key = key.replace(old, new)
        out[key] = value
    return out


def adapt_rgb_state_dict(state_dict: Mapping) -> dict:
    """Reduce a 3-channel (RGB) RRDBNet checkpoint to 1 input and 1 output channel.

    * ``conv_first.weight`` (F, 3, 3, 3) is SUMMED over its input channels -> (F, 1, 3, 3):
      a gray image ``g`` fed as R = G = B gives ``sum_c W_c * g``, so the 1-channel network sees
      exactly the features the RGB network computes for that gray image.
    * ``conv_last.weight`` (3, F, 3, 3) and ``conv_last.bias`` (3,) are AVERAGED over the three
      output channels -> (1, F, 3, 3), (1,): since ``conv_last`` is linear, the 1-channel output is
      exactly the mean of the RGB outputs (an equal-weight, luminance-like gray).

    Hence: adapted_model(g) == rgb_model(cat([g, g, g])).mean(channel) up to float rounding.
    Wrappers ``{"params_ema": ...}`` / ``{"params": ...}`` are unwrapped first. Tensors that are
    already 1-channel are left alone, so the function is idempotent; the input is not modified.
    Keys of the original ESRGAN repository's files are renamed (:func:`rename_legacy_esrgan_keys`).
    """
    sd = rename_legacy_esrgan_keys(unwrap_state_dict(state_dict))
    if "conv_first.weight" not in sd or "conv_last.weight" not in sd:
        raise ValueError("adapt_rgb_state_dict: not an RRDBNet state dict (no conv_first / conv_last weights)")
    first = sd["conv_first.weight"]
    if first.shape[1] == 3:
        sd["conv_first.weight"] = first.sum(dim=1, keepdim=True)
    elif first.shape[1] != 1:
        raise ValueError(
            f"adapt_rgb_state_dict: conv_first takes {first.shape[1]} input channels; only 3 (RGB) is"
            " supported (12 or 48 means Real-ESRGAN's pixel-unshuffle x2/x1 layout, not supported)"
        )
    last = sd["conv_last.weight"]
    if last.shape[0] == 3:
        sd["conv_last.weight"] = last.mean(dim=0, keepdim=True)
        if "conv_last.bias" in sd:
            sd["conv_last.bias"] = sd["conv_last.bias"].mean(dim=0, keepdim=True)
    elif last.shape[0] != 1:
        raise ValueError(f"adapt_rgb_state_dict: conv_last has {last.shape[0]} output channels; expected 3 or 1")
    return sd
