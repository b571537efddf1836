"""Full-reference image quality: PSNR, SSIM and MSE, vectorised over a batch of images.

SSIM follows Wang et al. (2004) and their reference MATLAB code: an 11x11 Gaussian window with
sigma 1.5, K1 = 0.01, K2 = 0.03, the data range given explicitly (255 for 8-bit, 65535 for
16-bit), statistics over the 'valid' part of the image (no padding), and the mean of the map.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
from scipy.ndimage import correlate1d

from karyosr.io.images import data_range, grey_levels_per_8bit_level


# Identical images have infinite PSNR; capping keeps table means finite and comparable.
PSNR_CAP_DB = 100.0


def mse(reference: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Per-image mean squared error of (N, H, W) batches."""
    diff = reference.astype(np.float64) - test.astype(np.float64)
    return (diff * diff).mean(axis=(-2, -1))


def psnr(reference: np.ndarray, test: np.ndarray, peak: float) -> np.ndarray:
    error = mse(reference, test)
    with np.errstate(divide="ignore"):
        value = 10.0 * np.log10(peak * peak / error)
    return np.minimum(value, PSNR_CAP_DB)


def gaussian_window(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    w = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return w / w.sum()


def _filter_valid(batch: np.ndarray, window: np.ndarray) -> np.ndarray:
    # The 2-D Gaussian is separable; correlating rows then columns and cutting the border
    # equals MATLAB's filter2(w, x, 'valid').
    half = len(window) // 2
    out = correlate1d(batch, window, axis=-1, mode="constant")
    out = correlate1d(out, window, axis=-2, mode="constant")
    return out[..., half : out.shape[-2] - half, half : out.shape[-1] - half]


def ssim(reference: np.ndarray, test: np.ndarray, peak: float, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Per-image mean SSIM of (N, H, W) batches (or single 2-D images)."""
    return ssim_map(reference, test, peak, window, sigma, k1, k2).mean(axis=(-2, -1))


def ssim_map(reference: np.ndarray, test: np.ndarray, peak: float, window: int = 11, sigma: float = 1.5,
             k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """The local SSIM values over the valid region: (..., H - window + 1, W - window + 1)."""
    if window % 2 == 0:
        raise ValueError(f"SSIM window must be odd (a centre pixel), got {window}")
    if min(reference.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window} pixels, got {reference.shape[-2:]}")
    w = gaussian_window(window, sigma)
    x = reference.astype(np.float64)
    y = test.astype(np.float64)
    c1, c2 = (k1 * peak) ** 2, (k2 * peak) ** 2
    mu_x, mu_y = _filter_valid(x, w), _filter_valid(y, w)
    sxx = _filter_valid(x * x, w) - mu_x * mu_x
    syy = _filter_valid(y * y, w) - mu_y * mu_y
    sxy = _filter_valid(x * y, w) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


def foreground_masks(hr: np.ndarray, polarity, threshold_level, dilation: int) -> np.ndarray:
    """The chromosome in each HR image, as crop_filter found it (same polarity and grey level),
    dilated by ``dilation`` pixels so the outline, where SR errors sit, counts as foreground."""
    scale = grey_levels_per_8bit_level(hr.dtype)
    masks = np.stack([
        (im <= level * scale) if pol == "dark_on_light" else (im > level * scale)
        for im, pol, level in zip(hr, polarity, threshold_level)
    ]) if len(hr) else np.zeros(hr.shape, bool)
    if dilation > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation + 1, 2 * dilation + 1))
        masks = np.stack([cv2.dilate(m.astype(np.uint8), kernel).astype(bool) for m in masks]) if len(masks) else masks
    return masks


def _masked_mean(values: np.ndarray, masks: np.ndarray) -> np.ndarray:
    counts = masks.sum(axis=(-2, -1))
    sums = np.where(masks, values, 0.0).sum(axis=(-2, -1))
    # An image whose mask is empty has no foreground to score; the whole image stands in.
    return np.where(counts > 0, sums / np.maximum(counts, 1), values.mean(axis=(-2, -1)))


def score(hr: np.ndarray, sr: np.ndarray, params: dict, masks: np.ndarray) -> pd.DataFrame:
    """PSNR, SSIM and MSE of SR against HR for a stacked batch, over the whole image and over the
    chromosome mask only (the uniform background inflates whole-image figures for every method)."""
    peak = data_range(hr.dtype)
    window = params["ssim_window"]
    local = ssim_map(hr, sr, peak, window, params["ssim_sigma"], params["ssim_k1"], params["ssim_k2"])
    half = window // 2
    diff = hr.astype(np.float64) - sr.astype(np.float64)
    squared = diff * diff
    mse_fg = _masked_mean(squared, masks)
    with np.errstate(divide="ignore"):
        psnr_fg = np.minimum(10.0 * np.log10(peak * peak / mse_fg), PSNR_CAP_DB)
    return pd.DataFrame(
        {
            "psnr": psnr(hr, sr, peak),
            "ssim": local.mean(axis=(-2, -1)),
            "mse": squared.mean(axis=(-2, -1)),
            "psnr_fg": psnr_fg,
            "ssim_fg": _masked_mean(local, masks[:, half : masks.shape[1] - half, half : masks.shape[2] - half]),
            "mse_fg": mse_fg,
        }
    )
