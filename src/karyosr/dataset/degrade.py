"""degrade: synthesise low-resolution images from the HR crops, one output per profile.

Random parameters (blur, noise level, JPEG quality) are drawn per image from a generator
seeded by (seed, profile, image_id), so an image degrades the same way in every run, shard
layout and job order.

Kernel ``bicubic`` is MATLAB's antialiased ``imresize`` (karyosr.resize), which made the LR
images of the SR literature; ``cv2_bicubic`` and the other kernels are OpenCV's ``cv2.resize``.
"""

from __future__ import annotations

import hashlib
import logging

import cv2
import numpy as np
import pandas as pd

from karyosr.io import shards
from karyosr.io.images import data_range
from karyosr.resize import imresize

log = logging.getLogger(__name__)

OPENCV_KERNELS = {
    "cv2_bicubic": cv2.INTER_CUBIC,  # a = -0.75 and no antialiasing: aliases when downscaling
    "bilinear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
    "lanczos": cv2.INTER_LANCZOS4,
}
KERNELS = ("bicubic", *OPENCV_KERNELS)


def downscale(image: np.ndarray, scale: int, kernel: str) -> np.ndarray:
    """``image`` reduced to (H // scale, W // scale): every LR pixel covers scale x scale HR pixels."""
    shape = (image.shape[0] // scale, image.shape[1] // scale)
    if kernel == "bicubic":
        return imresize(image, 1 / scale, output_shape=shape)
    if kernel not in OPENCV_KERNELS:
        raise ValueError(f"degrade kernel {kernel!r}: expected one of {', '.join(KERNELS)}")
    return cv2.resize(image, shape[::-1], interpolation=OPENCV_KERNELS[kernel])


def image_rng(seed: int, *keys: str) -> np.random.Generator:
    digest = hashlib.blake2b("\x1f".join([str(seed), *keys]).encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def _draw(value, rng: np.random.Generator, integer: bool = False):
    if isinstance(value, (list, tuple)):
        low, high = value
        return int(rng.integers(low, high + 1)) if integer else float(rng.uniform(low, high))
    return value


def degrade_image(hr: np.ndarray, profile: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Blur -> downscale -> contrast loss -> noise -> JPEG, the usual order of a microscope-and-camera
    chain. Scale 1 (a restoration profile) keeps the size: the same chain without resizing."""
    peak = data_range(hr.dtype)
    image = hr.astype(np.float32)
    sigma = float(_draw(profile["blur_sigma"], rng))
    if sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    scale = profile["scale"]
    if scale > 1:
        image = downscale(image, scale, profile["kernel"])
    contrast_loss = float(_draw(profile.get("contrast_loss", 0), rng))
    if contrast_loss > 0:  # a washed-out, under-stained or over-exposed capture: grey levels pulled to the mean
        image = image.mean() + (image - image.mean()) * (1.0 - contrast_loss)
    noise_sigma = 0.0
    if profile["noise"] == "gaussian":
        noise_sigma = float(_draw(profile["noise_sigma"], rng))
        image = image + rng.normal(0.0, noise_sigma, image.shape).astype(np.float32)
    elif profile["noise"] == "poisson":
        photons = profile["poisson_peak"]
        image = rng.poisson(np.clip(image, 0, peak) / peak * photons).astype(np.float32) * (peak / photons)
    lr = np.clip(np.rint(image), 0, peak).astype(hr.dtype)
    quality = _draw(profile.get("jpeg_quality"), rng, integer=True)
    if quality is not None and hr.dtype != np.uint8:
        quality = None  # baseline JPEG is 8-bit; 16-bit images skip the step (recorded as -1)
    if quality is not None:
        ok, buf = cv2.imencode(".jpg", lr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        lr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    record = {"scale": scale, "kernel": profile["kernel"] if scale > 1 else "none", "blur_sigma": sigma,
              "contrast_loss": contrast_loss, "noise": profile["noise"], "noise_sigma": noise_sigma,
              "jpeg_quality": int(quality) if quality is not None else -1}
    return lr, record


def degrade_images(meta: pd.DataFrame, images: list[np.ndarray], profile_name: str, profile: dict, seed: int):
    rows, out = [], []
    for row, hr in zip(meta.to_dict("records"), images):
        lr, record = degrade_image(hr, profile, image_rng(seed, profile_name, row["image_id"]))
        rows.append({**row, "profile": profile_name, **record})
        out.append(lr)
    return pd.DataFrame(rows, columns=list(meta.columns) + ["profile", "scale", "kernel", "blur_sigma", "contrast_loss",
                                                            "noise", "noise_sigma", "jpeg_quality"]), out


IDENTITY_COLUMNS = ["image_id", "dataset", "group", "label", "class_name", "split"]


def run(in_shard, split_manifest, profile_name: str, profile: dict, seed: int, out_shard) -> None:
    meta, images = shards.read_shard(in_shard)
    if "split" not in meta:  # tiles of whole images carry their own split (validation tiles of training images)
        splits = shards.read_table(split_manifest, columns=["image_id", "split"])
        meta = meta.merge(splits, on="image_id", how="left", validate="one_to_one")
    meta = meta[IDENTITY_COLUMNS]
    if meta["split"].isna().any():
        raise ValueError(f"{in_shard}: images missing from {split_manifest}: {list(meta.image_id[meta.split.isna()])[:5]}")
    lr_meta, lr = degrade_images(meta, images, profile_name, profile, seed)
    lr_meta["label"] = lr_meta["label"].astype("Int8")
    shards.write_shard(out_shard, lr_meta, lr)
    log.info("profile %s: %d images degraded", profile_name, len(lr))
