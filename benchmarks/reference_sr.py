"""The benchmarks' own SR reference: a plain residual CNN trained for a fixed wall time.

Written apart from the workflow's architectures and training loop, so a benchmark can put the
workflow's models beside something it did not tune: every SR benchmark trains this network on the
same training pairs for the same wall time and scores it as it scores the workflow's models.
"""

from __future__ import annotations

import math
import time

import numpy as np


def reference_network(scale: int, width: int, depth: int, shift: float):
    """A plain residual CNN: ``depth`` 3x3 conv + ReLU layers on the centred LR input, a 3x3 conv to
    scale^2 channels and PixelShuffle (scale 1: one channel), added to the bicubic image (torch's
    bicubic; scale 1: the input itself). He-initialised; the last layer starts small, so training
    starts at the skip."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ReferenceSR(nn.Module):
        def __init__(self):
            super().__init__()
            layers, channels = [], 1
            for _ in range(depth):
                conv = nn.Conv2d(channels, width, 3, padding=1)
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                nn.init.zeros_(conv.bias)
                layers += [conv, nn.ReLU(inplace=True)]
                channels = width
            self.body = nn.Sequential(*layers)
            self.tail = nn.Conv2d(width, scale * scale, 3, padding=1)
            with torch.no_grad():
                self.tail.weight.mul_(0.1)
                self.tail.bias.zero_()
            self.up = nn.PixelShuffle(scale) if scale > 1 else nn.Identity()

        def forward(self, x):
            skip = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False) if scale > 1 else x
            return skip + self.up(self.tail(self.body(x - shift)))

    return ReferenceSR()


def train_for(train, spec: dict, minutes: float, seed: int = 0):
    """Train the reference network of ``spec`` (width, depth, HR patch side, batch) on ``train``
    (`karyosr.sr.data.Pairs`; patches placed over the object as the workflow's PatchSampler places
    them) for ``minutes`` of wall time on the threads torch has: L1, Adam 1e-3 with a 50-step
    warm-up and cosine annealing over the time budget. Returns the network (eval mode) and what the
    training did."""
    import torch
    import torch.nn.functional as F

    from karyosr.sr.data import PatchSampler
    from karyosr.sr.inference import to_tensor

    torch.manual_seed(seed)
    scale, peak, cpu = train.scale, train.peak, torch.device("cpu")
    shift = float(train.lr.mean()) / peak
    net = reference_network(scale, spec["width"], spec["depth"], shift)
    sampler = PatchSampler(train, spec["patch"], spec["batch"])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.99))
    budget, warmup, losses, step = 60.0 * minutes, 50, [], 0
    net.train()
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < budget:
        factor = min(1.0, (step + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * elapsed / budget))
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * factor
        lr_batch, hr_batch = sampler.sample()
        loss = F.l1_loss(net(to_tensor(lr_batch, peak, cpu)), to_tensor(hr_batch, peak, cpu))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        step += 1
    train_seconds = time.perf_counter() - start
    info = {"minutes": minutes, "scale": scale, **spec, "parameters": sum(p.numel() for p in net.parameters()),
            "input_shift": round(shift, 4), "train_seconds": round(train_seconds, 1), "steps": step,
            "patches_per_second": round(step * spec["batch"] / max(train_seconds, 1e-9), 1),
            "train_tiles": len(train.hr),
            "l1_first_50": round(float(np.mean(losses[:50])), 5) if losses else None,
            "l1_last_50": round(float(np.mean(losses[-50:])), 5) if losses else None}
    return net.eval(), info


def super_resolve_images(net, lr_images: np.ndarray, peak: float, batch: int = 32) -> np.ndarray:
    """The reference network's output for (N, h, w) integer images, as images of their dtype."""
    import torch

    from karyosr.sr.inference import to_images, to_tensor

    outputs = []
    with torch.no_grad():
        for i in range(0, len(lr_images), batch):
            outputs.append(to_images(net(to_tensor(lr_images[i:i + batch], peak, torch.device("cpu"))), peak,
                                     lr_images.dtype))
    return np.concatenate(outputs)
