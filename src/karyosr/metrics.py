"""Full-reference image quality: PSNR, SSIM and MSE, vectorised over a batch of images.

SSIM follows Wang et al. (2004) and their reference MATLAB code: an 11x11 Gaussian window with
sigma 1.5, K1 = 0.01, K2 = 0.03, the data range given explicitly (255 for 8-bit, 65535 for
16-bit), statistics over the 'valid' part of the image (no padding), and the mean of the map.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.ndimage import correlate1d

from karyosr import shards

log = logging.getLogger(__name__)

# Identical images have infinite PSNR; capping keeps table means finite and comparable.
PSNR_CAP_DB = 100.0


def data_range(dtype: np.dtype) -> float:
    return 65535.0 if np.dtype(dtype) == np.uint16 else 255.0


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
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return ssim_map.mean(axis=(-2, -1))


def score(hr: np.ndarray, sr: np.ndarray, params: dict) -> pd.DataFrame:
    """PSNR, SSIM and MSE of SR against HR for a stacked batch."""
    peak = data_range(hr.dtype)
    return pd.DataFrame(
        {
            "psnr": psnr(hr, sr, peak),
            "ssim": ssim(hr, sr, peak, params["ssim_window"], params["ssim_sigma"], params["ssim_k1"], params["ssim_k2"]),
            "mse": mse(hr, sr),
        }
    )


def run(hr_shard, sr_shard, params: dict, out_table) -> None:
    sr_meta, sr_images = shards.read_shard(sr_shard)
    hr_meta, hr_images = shards.read_shard(hr_shard)
    position = {image_id: i for i, image_id in enumerate(hr_meta["image_id"])}
    missing = [i for i in sr_meta["image_id"] if i not in position]
    if missing:
        raise ValueError(f"{sr_shard}: images without an HR counterpart in {hr_shard}: {missing[:5]}")
    hr = shards.stack([hr_images[position[i]] for i in sr_meta["image_id"]])
    sr = shards.stack(sr_images)
    table = sr_meta[["image_id", "label", "class_name", "profile", "method"]].reset_index(drop=True)
    if len(table):
        table = pd.concat([table, score(hr, sr, params)], axis=1)
    else:
        table = table.assign(psnr=[], ssim=[], mse=[])
    shards.write_table(out_table, table)
    log.info("%d images scored", len(table))


def summarise(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count per profile x method."""
    grouped = per_image.groupby(["profile", "method"], sort=True)
    summary = grouped[["psnr", "ssim", "mse"]].agg(["mean", "std"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    summary["n_images"] = grouped.size()
    return summary.reset_index()
