"""crop_filter: the image adaptive module of SRAS-net, plus the quality filters.

Each chromosome is cut out at its foreground bounding box, shrunk (aspect kept) only when its
longer side exceeds the target, and padded to a square of the background value. Chromosomes
are never enlarged: their relative size is a class feature. Images with too little foreground
or too little detail (blurred or empty crops) are rejected with the reason.

With ``adaptive_crop`` off (the ablation without the image adaptive module) the box is the
whole image: it is shrunk and padded the same way, so the chromosome keeps whatever background
margin the source gave it. The quality filters apply either way.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pandas as pd

from karyosr.dataset.ingest import REJECTED_COLUMNS
from karyosr.io import shards
from karyosr.io.images import ImageRejected, grey_levels_per_8bit_level

log = logging.getLogger(__name__)

MIN_CONTRAST = 8  # grey levels (8-bit scale); below this an image has no chromosome to find


def border_median(image: np.ndarray) -> float:
    """The background level: a single-chromosome crop's border is almost all background."""
    return float(np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])))


def detect_polarity(image: np.ndarray, background: float) -> str:
    """'dark_on_light' (G-band, bright field) or 'light_on_dark' (Q-band, fluorescence)."""
    return "dark_on_light" if background >= image.mean() else "light_on_dark"


def _as_8bit(image: np.ndarray) -> np.ndarray:
    return (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image


def foreground_mask(image: np.ndarray, polarity: str, threshold, min_component_fraction: float) -> tuple[np.ndarray, float]:
    """Binary chromosome mask and the threshold used; debris components are dropped."""
    gray = _as_8bit(image)
    if threshold == "otsu":
        level, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    else:
        level = float(threshold) / grey_levels_per_8bit_level(image.dtype)
    # Otsu's level is the top of the dark class, so the dark side includes it.
    mask = (gray <= level) if polarity == "dark_on_light" else (gray > level)
    count, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask), float(level)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.concatenate([[False], areas >= min_component_fraction * areas.max()])
    return keep[components], float(level)


def detail_score(image: np.ndarray, mask: np.ndarray, sigma: float) -> float:
    """Mean absolute horizontal + vertical neighbour difference inside the chromosome, after a
    Gaussian prefilter that keeps sensor noise from counting as detail."""
    smooth = image.astype(np.float32)
    if sigma > 0:
        smooth = cv2.GaussianBlur(smooth, (0, 0), sigma)
    dx = np.abs(np.diff(smooth, axis=1))[mask[:, 1:] | mask[:, :-1]]
    dy = np.abs(np.diff(smooth, axis=0))[mask[1:, :] | mask[:-1, :]]
    total = dx.size + dy.size
    return float((dx.sum() + dy.sum()) / total) if total else 0.0


def crop_filter_image(image: np.ndarray, params: dict) -> tuple[np.ndarray, dict]:
    """Crop, rescale and pad one image; raise ImageRejected with the reason if filtered out."""
    gray = _as_8bit(image)
    contrast = int(gray.max()) - int(gray.min())
    if contrast < MIN_CONTRAST:
        raise ImageRejected(f"no foreground: the image is flat (contrast {contrast} grey levels)")
    background = border_median(image)
    polarity = params["polarity"] if params["polarity"] != "auto" else detect_polarity(image, background)
    mask, level = foreground_mask(image, polarity, params["threshold"], params["min_component_fraction"])
    area = int(mask.sum())
    if area < params["min_foreground_px"]:
        raise ImageRejected(f"foreground of {area} px is below crop_filter.min_foreground_px {params['min_foreground_px']}")

    if params["adaptive_crop"]:
        ys, xs = np.nonzero(mask)
        margin = params["margin"]
        y0, y1 = max(int(ys.min()) - margin, 0), min(int(ys.max()) + 1 + margin, image.shape[0])
        x0, x1 = max(int(xs.min()) - margin, 0), min(int(xs.max()) + 1 + margin, image.shape[1])
    else:
        y0, y1, x0, x1 = 0, image.shape[0], 0, image.shape[1]
    crop, crop_mask = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]

    detail = detail_score(crop, crop_mask, params["detail_sigma"])
    if detail < params["min_detail"]:
        raise ImageRejected(f"detail score {detail:.2f} is below crop_filter.min_detail {params['min_detail']}")

    target = params["target_size"]
    scale = min(1.0, target / max(crop.shape))
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    out = np.full((target, target), round(background), dtype=image.dtype)
    top, left = (target - crop.shape[0]) // 2, (target - crop.shape[1]) // 2
    out[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    record = {
        "polarity": polarity,
        "threshold_level": level,
        "background": round(background),
        "foreground_px": area,
        "detail_score": detail,
        "crop_y0": y0, "crop_y1": y1, "crop_x0": x0, "crop_x1": x1,
        "crop_scale": scale,
        "pad_top": top, "pad_left": left,
        "adaptive_crop": bool(params["adaptive_crop"]),
    }
    return out, record


def crop_filter_images(meta: pd.DataFrame, images: list[np.ndarray], params: dict):
    """Apply crop_filter_image to a shard: (kept rows, kept images, rejected rows)."""
    rows, kept, rejected = [], [], []
    for row, image in zip(meta.to_dict("records"), images):
        try:
            out, record = crop_filter_image(image, params)
        except ImageRejected as exc:
            rejected.append({"image_id": row["image_id"], "source": row["source"], "stage": "crop_filter",
                             "reason": str(exc)})
            continue
        rows.append({**row, **record, "orig_height": image.shape[0], "orig_width": image.shape[1]})
        kept.append(out)
    columns = list(meta.columns) + ["polarity", "threshold_level", "background", "foreground_px",
                                    "detail_score", "crop_y0", "crop_y1", "crop_x0", "crop_x1",
                                    "crop_scale", "pad_top", "pad_left", "adaptive_crop", "orig_height", "orig_width"]
    kept_meta = pd.DataFrame(rows, columns=columns)
    kept_meta["label"] = kept_meta["label"].astype("Int8")
    return kept_meta, kept, pd.DataFrame(rejected, columns=REJECTED_COLUMNS)


def run(in_shard, params: dict, out_shard, out_rejected) -> None:
    meta, images = shards.read_shard(in_shard)
    kept_meta, kept, rejected = crop_filter_images(meta, images, params)
    shards.write_shard(out_shard, kept_meta, kept)
    shards.write_table(out_rejected, rejected)
    log.info("%d images kept, %d rejected", len(kept), len(rejected))
    for item in rejected.itertuples():
        log.warning("rejected %s: %s", item.image_id, item.reason)
