"""The forward pass of an SR model: integer images to and from the models' float tensors
(``to_tensor``, ``to_images``, also what the classifiers take), one LR batch through a model
whatever its input convention (``super_resolve``) and whole image arrays in batches
(``predict``). Training, tiled inference and the classifiers all run their models through here."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from karyosr.engine import autocast
from karyosr.sr import archs


def to_tensor(images: np.ndarray, peak: float, device: torch.device) -> torch.Tensor:
    """(N, H, W) integers -> (N, 1, H, W) float in [0, 1]."""
    return torch.from_numpy(images.astype(np.float32) / peak).unsqueeze(1).to(device)


def to_images(batch: torch.Tensor, peak: float, dtype) -> np.ndarray:
    """(N, 1, H, W) float in [0, 1] -> (N, H, W) rounded and clipped integers."""
    array = batch.detach().float().clamp(0, 1).mul(peak).round().squeeze(1).cpu().numpy()
    return array.astype(dtype)


def super_resolve(model: nn.Module, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The model's prediction for an LR batch, whatever its input convention."""
    if getattr(model, "input_upsampled", False):
        lr = F.interpolate(lr, size=(lr.shape[-2] * scale, lr.shape[-1] * scale), mode="bicubic", align_corners=False)
    return archs.final_output(model(lr))


@torch.no_grad()
def predict(model: nn.Module, lr_images: np.ndarray, scale: int, peak: float, device: torch.device,
            batch_size: int = 64, bf16: bool = True, rounded: bool = True) -> np.ndarray:
    """Super-resolve (N, h, w) integer images in batches; returns (N, h*scale, w*scale) images of
    the input's dtype, or with ``rounded=False`` float32 grey values clipped to [0, peak] (tiles
    blended before rounding)."""
    model.eval()
    out = []
    for start in range(0, len(lr_images), batch_size):
        lr = to_tensor(lr_images[start : start + batch_size], peak, device)
        with autocast(device, bf16):
            sr = super_resolve(model, lr, scale)
        out.append(to_images(sr, peak, lr_images.dtype) if rounded
                   else sr.detach().float().clamp(0, 1).mul(peak).squeeze(1).cpu().numpy())
    if out:
        return np.concatenate(out)
    return np.zeros((0,) + tuple(s * scale for s in lr_images.shape[1:]), lr_images.dtype if rounded else np.float32)
