"""Interpolation baselines: LR test images upscaled back to HR size.

They write the super-resolution output contract that learned models follow too: one shard per
input shard with the identity columns, ``method``, ``profile`` and the SR image at HR size.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pandas as pd

from karyosr.dataset.degrade import IDENTITY_COLUMNS, OPENCV_KERNELS
from karyosr.io import shards
from karyosr.io.images import data_range
from karyosr.resize import imresize

log = logging.getLogger(__name__)

SR_COLUMNS = IDENTITY_COLUMNS + ["profile", "method", "scale"]


def upscale(lr: np.ndarray, scale: int, method: str, unsharp: dict | None = None) -> np.ndarray:
    """Resize by ``scale``; cubic kernels overshoot, so results are clipped to the dtype range.

    'bicubic' is MATLAB's ``imresize`` kernel (a = -0.5, karyosr.resize), the bicubic of the SR
    literature; nearest, bilinear and lanczos are OpenCV's. 'unsharp' is the filter-sharpening
    baseline: bicubic, then an unsharp mask (image + amount x (image - Gaussian(image, sigma))).
    """
    if method in ("bicubic", "unsharp"):
        out = imresize(lr.astype(np.float32), scale)
    else:
        size = (lr.shape[1] * scale, lr.shape[0] * scale)
        out = cv2.resize(lr.astype(np.float32), size, interpolation=OPENCV_KERNELS[method])
    if method == "unsharp":
        out = out + unsharp["amount"] * (out - cv2.GaussianBlur(out, (0, 0), unsharp["sigma"]))
    return np.clip(np.rint(out), 0, data_range(lr.dtype)).astype(lr.dtype)


def select_split(meta: pd.DataFrame, images: list[np.ndarray], split: str):
    keep = (meta["split"] == split).to_numpy()
    return meta.loc[keep].reset_index(drop=True), [im for im, k in zip(images, keep) if k]


def run(in_shard, method: str, unsharp: dict, out_shard, split: str = "test") -> None:
    meta, images = select_split(*shards.read_shard(in_shard), split)
    out = [upscale(lr, int(scale), method, unsharp) for lr, scale in zip(images, meta["scale"])]
    meta = meta.assign(method=method)[SR_COLUMNS]
    shards.write_shard(out_shard, meta, out)
    log.info("%s: %d %s images upscaled", method, len(out), split)
