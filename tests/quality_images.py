"""Test images for the no-reference quality metrics: synthetic chromosome montages and the
blur / noise degradations the NIQE and PIQE tests sweep over."""

from __future__ import annotations

import cv2
import numpy as np

from karyosr.dataset import synthetic

SIZE = 192
BASE_NOISE = 2.0  # sensor-like noise of "clean" images (the generator's default range is 2-6)


def montage(seed: int, size: int = SIZE, base_noise: float = BASE_NOISE, bg: float = 15.0) -> np.ndarray:
    """Synthetic Q-banded chromosomes (sharp, noise-free renders) packed on a flat background,
    plus Gaussian noise of ``base_noise``; float64 on 0-255."""
    rng = np.random.default_rng([seed, 42])
    # Fine bands (2.1 px) at any orientation: the thresholds of the NIQE and PIQE tests were set on these.
    params = {"noise_sigma": [0.0, 0.0], "blur_sigma": [0.4, 0.4], "chr1_length_px": 80, "width_px": 9,
              "band_px": 2.1, "rotate": True, "max_bend_deg": 35}
    style = {"background": bg, "noise_sigma": 0.0, "blur_sigma": 0.4}
    canvas = np.full((size, size), bg)
    x = y = row_h = 0
    for _ in range(60):
        img = synthetic.render_chromosome(int(rng.integers(1, 25)), rng, params, style).astype(np.float64)
        h, w = img.shape
        if x + w > size:
            x, y, row_h = 0, y + row_h, 0
        if y + h > size:
            break
        canvas[y : y + h, x : x + w] = img
        x, row_h = x + w, max(row_h, h)
    if base_noise:
        canvas = canvas + np.random.default_rng([seed, 43]).normal(0.0, base_noise, canvas.shape)
    return np.clip(canvas, 0.0, 255.0)


def degrade(img: np.ndarray, blur: float = 0.0, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    out = img.astype(np.float64)
    if blur:
        out = cv2.GaussianBlur(out, (0, 0), blur, borderType=cv2.BORDER_REPLICATE)
    if noise:
        out = out + np.random.default_rng([seed, 7]).normal(0.0, noise, out.shape)
    return np.clip(out, 0.0, 255.0)
