"""SRFBN, the super-resolution feedback network (Li et al., CVPR 2019), for grayscale images,
plus the step-attention loss weighting used by SRAS-net (a self-attention feedback SR network).

Structure (m = ``num_feat``, G = ``num_group``, T = ``num_step``):

* LR feature block: conv3x3 (1 -> 4m) + PReLU, conv1x1 (4m -> m) + PReLU -> ``F_in``.
* Feedback block, run T times with the same weights. At step t it takes ``F_in`` and the hidden
  state (its own previous output; at t = 0 the hidden state is ``F_in`` itself):
  1x1 compress (2m -> m) + PReLU -> L_0; then for g = 1..G a projection group: the LR maps
  L_0..L_{g-1} are fused by a 1x1 conv + PReLU (dense connection; g = 1 uses L_0 directly),
  up-projected by a deconvolution + PReLU to H_g; H_1..H_g are fused by a 1x1 conv + PReLU
  (g = 1: H_1 directly) and down-projected by a strided conv + PReLU to L_g. The block's output
  is a 1x1 fusion (G*m -> m) + PReLU of L_1..L_G.
* Reconstruction (weights shared over steps, as in the paper): deconvolution + PReLU to HR,
  conv3x3 (m -> 1), plus the bicubic-upsampled LR image.

Projection kernels (kernel, stride, padding): x2 (6, 2, 2), x3 (7, 3, 2), x4 (8, 4, 2),
x8 (12, 8, 2); with these the deconvolution gives exactly ``scale * h`` and the strided conv
brings it back to ``h``, for any (odd) h.

``SRFBN.forward`` returns the LIST of the T step outputs; the last one is the prediction
(:func:`karyosr.sr.archs.final_output` picks it). No mean shift is applied (inputs are [0, 1] gray).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from karyosr.sr.archs._common import bicubic_up, check_scale, start_at_skip

# x1 (restoration at native size, not in the paper): 3x3 projections with stride 1.
PROJECTION = {1: (3, 1, 1), 2: (6, 2, 2), 3: (7, 3, 2), 4: (8, 4, 2), 8: (12, 8, 2)}


def _conv_prelu(cin: int, cout: int, k: int, stride: int = 1, padding: int | None = None) -> nn.Sequential:
    padding = k // 2 if padding is None else padding
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding), nn.PReLU(init=0.2))


def _deconv_prelu(cin: int, cout: int, k: int, stride: int, padding: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, k, stride, padding), nn.PReLU(init=0.2))


def _he_init(module: nn.Module, slope: float = 0.2) -> None:
    """Variance-preserving (He) init for every conv and deconv before a PReLU(slope).

    PyTorch's default init shrinks activations by about 1/sqrt(3) per layer; through SRFBN's
    ~20 stacked convolutions the feedback path's output vanishes and training sits at the bicubic
    skip (measured: 33.7 dB after 300 steps on the synthetic x4 data, against 36.0 dB with this
    init). A deconvolution's output pixel sees ``in_channels * (kernel / stride)^2`` inputs,
    not the ``out_channels * kernel^2`` that ``kaiming_normal_`` would assume for its weight.
    """
    gain = math.sqrt(2.0 / (1.0 + slope**2))
    for layer in module.modules():
        if isinstance(layer, nn.ConvTranspose2d):
            fan_in = layer.in_channels * (layer.kernel_size[0] / layer.stride[0]) * (layer.kernel_size[1] / layer.stride[1])
        elif isinstance(layer, nn.Conv2d):
            fan_in = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
        else:
            continue
        nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(fan_in))
        nn.init.zeros_(layer.bias)


class FeedbackBlock(nn.Module):
    """G densely connected up/down projection groups between a 1x1 compression in and out."""

    def __init__(self, num_feat: int, num_group: int, kernel: int, stride: int, padding: int):
        super().__init__()
        m = num_feat
        self.num_group = num_group
        self.compress_in = _conv_prelu(2 * m, m, 1)
        self.up_blocks = nn.ModuleList(_deconv_prelu(m, m, kernel, stride, padding) for _ in range(num_group))
        self.down_blocks = nn.ModuleList(_conv_prelu(m, m, kernel, stride, padding) for _ in range(num_group))
        # fusion before group g (g >= 1) of the g + 1 LR maps / HR maps produced so far
        self.up_fuse = nn.ModuleList(_conv_prelu((g + 1) * m, m, 1) for g in range(1, num_group))
        self.down_fuse = nn.ModuleList(_conv_prelu((g + 1) * m, m, 1) for g in range(1, num_group))
        self.compress_out = _conv_prelu(num_group * m, m, 1)

    def forward(self, feat_in: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        lows = [self.compress_in(torch.cat([feat_in, hidden], 1))]
        highs: list[torch.Tensor] = []
        for g in range(self.num_group):
            low = lows[0] if g == 0 else self.up_fuse[g - 1](torch.cat(lows, 1))
            highs.append(self.up_blocks[g](low))
            high = highs[0] if g == 0 else self.down_fuse[g - 1](torch.cat(highs, 1))
            lows.append(self.down_blocks[g](high))
        return self.compress_out(torch.cat(lows[1:], 1))


class SRFBN(nn.Module):
    """Feedback SR network. Defaults (m=32, G=3, T=4) are the paper's light SRFBN-S; the full
    SRFBN is ``num_feat=64, num_group=6``. ``input_shift`` is subtracted from the input before
    ``conv_in`` (0 = published; see :mod:`karyosr.sr.archs`).

    Input ``(N, 1, h, w)``; ``forward`` returns a list of T tensors ``(N, 1, h*scale, w*scale)``
    (not clamped), the last being the prediction.
    """

    SCALES = tuple(PROJECTION)

    def __init__(self, scale: int, num_feat: int = 32, num_group: int = 3, num_step: int = 4, num_in_ch: int = 1,
                 input_shift: float = 0.0):
        super().__init__()
        self.input_shift = float(input_shift)
        self.scale = check_scale(type(self).__name__, scale, self.SCALES)
        if num_step < 1 or num_group < 1:
            raise ValueError("SRFBN: num_step and num_group must be >= 1")
        self.num_step = num_step
        m = num_feat
        k, s, p = PROJECTION[self.scale]
        self.conv_in = _conv_prelu(num_in_ch, 4 * m, 3)
        self.feat_in = _conv_prelu(4 * m, m, 1)
        self.block = FeedbackBlock(m, num_group, k, s, p)
        self.out_up = _deconv_prelu(m, m, k, s, p)
        self.conv_out = nn.Conv2d(m, num_in_ch, 3, 1, 1)
        _he_init(self)
        # A hundredth: with the He init the HR features keep unit scale, so a tenth of the default
        # head still started 1 dB below bicubic (27.1 vs 28.1 dB, 48 px G-band x4).
        start_at_skip(self.conv_out, gain=0.01)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        up = bicubic_up(x, self.scale)
        feat = self.feat_in(self.conv_in(x - self.input_shift if self.input_shift else x))
        hidden = feat
        outputs = []
        for _ in range(self.num_step):
            hidden = self.block(feat, hidden)
            outputs.append(up + self.conv_out(self.out_up(hidden)))
        return outputs


class StepAttention(nn.Module):
    """Learned self-attention over the T step outputs giving per-step loss weights (sum 1).

    Each step output goes through a tiny shared encoder (two 3x3 convs, the first strided, ReLU)
    and global average pooling; with the image's mean and standard deviation this gives a
    descriptor, projected to ``dim`` and added to a learned step embedding. Scaled dot-product
    self-attention (query/key/value, shared over steps) mixes the T descriptors; a linear score
    per step and a softmax over steps give the weights, per image, averaged over the batch.

    Args:
        num_step: T.
        channels, dim: encoder width and attention width.
        detach: descriptors are computed from detached step outputs (default), so the weights
            never push gradients into the SR network; the SR network is trained only through the
            weighted per-step losses.
        floor: optional minimum share, weights = floor / T + (1 - floor) * softmax; 0 = plain
            softmax. Trained jointly on the weighted loss alone, the softmax drifts towards the
            step with the smallest loss; a floor keeps every step supervised.

    ``forward(step_outputs)`` takes a list/tuple of T tensors (N, C, H, W) (C channels are
    averaged) or a tensor (N, T, C, H, W); returns weights of shape (T,).
    """

    def __init__(self, num_step: int, channels: int = 8, dim: int = 16, detach: bool = True, floor: float = 0.0):
        super().__init__()
        if not 0.0 <= floor < 1.0:
            raise ValueError(f"StepAttention: floor must be in [0, 1), got {floor}")
        self.num_step = num_step
        self.detach = detach
        self.floor = floor
        self.encoder = nn.Sequential(
            nn.Conv2d(1, channels, 3, 2, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.ReLU(inplace=True),
        )
        self.embed = nn.Linear(channels + 2, dim)
        self.step_embedding = nn.Parameter(0.02 * torch.randn(num_step, dim))
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.score = nn.Linear(dim, 1)

    def forward(self, step_outputs: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        ys = step_outputs if torch.is_tensor(step_outputs) else torch.stack(list(step_outputs), 1)
        if ys.dim() != 5 or ys.shape[1] != self.num_step:
            raise ValueError(f"StepAttention: expected {self.num_step} step outputs (N, T, C, H, W), got {tuple(ys.shape)}")
        if self.detach:
            ys = ys.detach()
        n, t = ys.shape[:2]
        gray = ys.mean(2).reshape(n * t, 1, *ys.shape[-2:])
        pooled = self.encoder(gray).mean((2, 3))
        stats = torch.stack([gray.mean((1, 2, 3)), gray.std((1, 2, 3), correction=0)], 1)
        d = self.embed(torch.cat([pooled, stats], 1)).view(n, t, -1) + self.step_embedding
        q, k, v = self.query(d), self.key(d), self.value(d)
        attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d.shape[-1]), dim=-1)
        z = d + attn @ v
        weights = torch.softmax(self.score(torch.tanh(z)).squeeze(-1), dim=-1)  # (N, T)
        weights = self.floor / t + (1.0 - self.floor) * weights
        return weights.mean(0)


def srfbn_loss(
    step_outputs: Sequence[torch.Tensor],
    target: torch.Tensor,
    attention: StepAttention | None,
    base_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.l1_loss,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted sum of per-step losses: ``sum_t w_t * base_loss(step_outputs[t], target)``.

    The weights come from ``attention(step_outputs)`` (shape (T,), sum 1); with
    ``attention=None`` they are uniform (1/T, SRFBN's plain curriculum-free loss). Returns
    ``(loss, weights)``; put the attention's parameters in the optimiser to learn them.
    """
    steps = list(step_outputs)
    if not steps:
        raise ValueError("srfbn_loss: no step outputs")
    losses = torch.stack([base_loss(y, target) for y in steps])
    if attention is None:
        weights = torch.full_like(losses, 1.0 / len(steps))
    else:
        weights = attention(steps).to(losses.dtype)
    return (weights * losses).sum(), weights
