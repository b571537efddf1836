"""A model's image domain: grey-level statistics of the images it was trained on, and whether an
image a user gives it lies inside them.

A model trained on bright chromosomes on a black background applied to a grey photograph does
not fail: it writes stripes, or shifts the grey levels, silently. Model files therefore record
the statistics of their training images (``domain`` in the metadata, see karyosr.model_file),
and ``karyosr enhance`` / ``karyosr classify`` compare each input image with them
(:func:`compare`) before running the model.

All grey levels are fractions of the images' peak (255 for 8-bit, 65535 for 16-bit), so 8- and
16-bit images compare directly. Pure numpy: no torch, no file access.

Statistics (:func:`image_statistics`)
-------------------------------------
Per image: the mean grey level, its spread (the standard deviation of the image's grey levels)
and the background (the median of a border ring ``max(1, min(h, w) // 20)`` pixels wide).
An image is ``dark_on_light`` when its background is brighter than its mean, else
``light_on_dark``. Over a set of images: the median of each per-image figure and its 5th and
95th percentiles (``*_p05``, ``*_p95``: the range a new image is judged against), the majority
polarity among the images with a clear polarity (background and mean at least
``POLARITY_CONTRAST`` apart; all images when none is clear) and the share of those images that
have it (``polarity_share``), ``bit_depth`` and ``image_count``. Images larger than
``MAX_PIXELS`` are read with a fixed stride ``ceil(sqrt(h * w / MAX_PIXELS))`` in both
directions (deterministic; the statistics are those of a few hundred thousand pixels).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

# Larger images are subsampled with a fixed stride to about this many pixels.
MAX_PIXELS = 1 << 20
# Pixels handled at once when a stack of small images is summarised (bounds the float copies).
_CHUNK_PIXELS = 1 << 22
# An image has a polarity only when its background and mean differ by this share of the peak
# (5 grey levels of 255): a flat image (a blank field, a grey photo) has none.
POLARITY_CONTRAST = 0.02
# Mean grey and background: the training images' p05-p95 range widened on each side by its own
# width, and at least by this share of the peak.
MIN_MARGIN = 0.1
# Grey spread: outside [p05 / SPREAD_FACTOR, p95 * SPREAD_FACTOR] of the training images.
SPREAD_FACTOR = 2.0
# A polarity is warned about only when at least this share of the training images had the other.
POLARITY_SHARE = 0.95


def _stride(shape: tuple[int, int]) -> int:
    return max(1, math.ceil(math.sqrt(shape[0] * shape[1] / MAX_PIXELS)))


def _per_image(stack: np.ndarray, peak: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard deviation and border median of each image of an (N, H, W) stack, as
    fractions of ``peak``."""
    n, h, w = stack.shape
    ring = max(1, min(h, w) // 20)
    step = max(1, _CHUNK_PIXELS // max(h * w, 1))
    means, stds, borders = [], [], []
    for start in range(0, n, step):
        x = stack[start : start + step].astype(np.float32) / np.float32(peak)
        k = len(x)
        means.append(x.mean(axis=(1, 2), dtype=np.float64))
        stds.append(x.std(axis=(1, 2), dtype=np.float64))
        if min(h, w) <= 2 * ring:
            border = x.reshape(k, -1)
        else:
            border = np.concatenate([x[:, :ring].reshape(k, -1), x[:, -ring:].reshape(k, -1),
                                     x[:, ring:-ring, :ring].reshape(k, -1), x[:, ring:-ring, -ring:].reshape(k, -1)],
                                    axis=1)
        borders.append(np.median(border, axis=1).astype(np.float64))
    return np.concatenate(means), np.concatenate(stds), np.concatenate(borders)


def _as_images(images) -> list[np.ndarray] | np.ndarray:
    if isinstance(images, np.ndarray):
        if images.ndim == 2:
            return images[None]
        if images.ndim == 3:
            return images
        raise ValueError(f"image statistics need 2-D grey images or an (N, H, W) stack, got shape {images.shape}")
    images = list(images)
    for image in images:
        if np.ndim(image) != 2:
            raise ValueError(f"image statistics need 2-D grey images, got shape {np.shape(image)}")
    return images


def image_statistics(images, peak: float) -> dict:
    """Grey-level statistics of ``images`` (one 2-D image, an (N, H, W) stack or a sequence of
    2-D images of any sizes; uint8 / uint16) as fractions of ``peak``; see the module docstring."""
    images = _as_images(images)
    if not len(images):
        raise ValueError("image statistics need at least one image")
    if isinstance(images, np.ndarray) and _stride(images.shape[1:]) == 1:
        means, stds, borders = _per_image(images, peak)
    else:
        # Images grouped by (subsampled) size so each group is summarised as one stack.
        groups: dict[tuple, list[int]] = {}
        sampled = []
        for index, image in enumerate(images):
            s = _stride(image.shape)
            sampled.append(image[::s, ::s] if s > 1 else image)
            groups.setdefault(sampled[-1].shape, []).append(index)
        means, stds, borders = (np.empty(len(images)) for _ in range(3))
        for members in groups.values():
            m, s, b = _per_image(np.stack([sampled[i] for i in members]), peak)
            means[members], stds[members], borders[members] = m, s, b
    contrast = borders - means
    clear = np.abs(contrast) >= POLARITY_CONTRAST
    voters = contrast[clear] if clear.any() else contrast
    dark_share = float((voters > 0).mean())
    polarity = "dark_on_light" if dark_share > 0.5 else "light_on_dark"

    def summary(name: str, values: np.ndarray) -> dict:
        return {name: round(float(np.median(values)), 4), f"{name}_p05": round(float(np.percentile(values, 5)), 4),
                f"{name}_p95": round(float(np.percentile(values, 95)), 4)}

    return {**summary("mean_grey", means), **summary("grey_spread", stds), **summary("background", borders),
            "polarity": polarity, "polarity_share": round(max(dark_share, 1 - dark_share), 4),
            "bit_depth": 16 if peak > 255 else 8, "image_count": int(len(means))}


def pixel_sizes_um(meta, factor: float = 1.0) -> np.ndarray:
    """The pixel side in micrometres of each row of a table of per-image columns (NaN where
    unknown): the ingested file's ``pixel_size_um``, divided by ``crop_scale`` where crop_filter
    shrank the crop to its target size (fewer, larger pixels), times ``factor`` (an HR table's
    sizes for its LR images: the profile's scale)."""
    sizes = pd.to_numeric(pd.Series(np.asarray(meta["pixel_size_um"], dtype=object)), errors="coerce").to_numpy(np.float64)
    if "crop_scale" in meta:
        sizes = sizes / pd.to_numeric(pd.Series(np.asarray(meta["crop_scale"], dtype=object)),
                                      errors="coerce").to_numpy(np.float64)
    sizes = sizes * factor
    return np.where(np.isfinite(sizes) & (sizes > 0), sizes, np.nan)


def dataset_facts(meta) -> dict:
    """``dataset`` (the names in a ``dataset`` column, joined by ', ' when several; None without
    one) and ``pixel_size_um`` (the median of a ``pixel_size_um`` column's finite values, each
    as `pixel_sizes_um` gives them; None without) of a table of per-image columns (a DataFrame or a mapping of columns)."""
    names = None
    if "dataset" in meta:
        values = sorted({str(v) for v in np.asarray(meta["dataset"], dtype=object) if v is not None and v == v})
        names = ", ".join(values) if values else None
    size = None
    if "pixel_size_um" in meta:
        sizes = pixel_sizes_um(meta)
        sizes = sizes[np.isfinite(sizes)]
        size = round(float(np.median(sizes)), 6) if len(sizes) else None
    return {"dataset": names, "pixel_size_um": size}


def domain_record(images, peak: float, dataset: str | None = None, pixel_size_um: float | None = None) -> dict:
    """What a model file records about its training images: :func:`image_statistics` plus the
    ``dataset`` name and the ``pixel_size_um`` of the images (None when unknown)."""
    return {**image_statistics(images, peak), "dataset": dataset,
            "pixel_size_um": None if pixel_size_um is None else float(pixel_size_um)}


def _outside(label: str, value: float, domain: Mapping, key: str, low: float, high: float) -> list[str]:
    if low <= value <= high:
        return []
    return [f"{label} {value:.2f}, model trained on {domain[key]:.2f} "
            f"({domain[f'{key}_p05']:.2f}-{domain[f'{key}_p95']:.2f} over its training images)"]


def _has(domain: Mapping, stats: Mapping, key: str) -> bool:
    return all(k in domain for k in (key, f"{key}_p05", f"{key}_p95")) and key in stats


def compare(stats: Mapping, domain: Mapping | None) -> list[str]:
    """Warnings, one sentence per figure, when the image of ``stats`` (:func:`image_statistics`
    of one image) lies outside the training ``domain`` of a model; an empty list when it lies
    inside, or when there is no domain (model files written before domains were recorded).

    Thresholds, chosen so that an image of the training data set passes and an image of another
    kind (a grey photograph, the other polarity, a 12-bit image stored in 16 bits) does not:

    * mean grey and background: outside the training images' p05-p95 range widened on each side
      by ``max(MIN_MARGIN, p95 - p05)``. The range holds 90 % of the training images; widening it
      by its own width puts the bounds about 5 standard deviations from the centre for normally
      distributed means (p05-p95 spans 3.3), so images of the training data pass. The 0.1 floor
      (25 grey levels of 255) covers data sets whose images all share one exposure (whole-slide
      tiles) against the small exposure differences a model absorbs. A grey photo (mean 0.5-0.7)
      against chromosomes on black (0.05-0.12) is far outside; so is a white background (0.9)
      against a black one (0.0).
    * grey spread (the image's standard deviation): below p05 / 2 or above p95 * 2 of the
      training images, i.e. half the contrast of the flattest training image or double that of
      the most contrasted one (a 12-bit image stored in 16 bits has 1/16 of the spread).
    * polarity: the image's differs from the training majority, the image has a clear polarity
      (background and mean at least ``POLARITY_CONTRAST`` apart, so a flat image never warns)
      and at least 95 % of the training images had the majority polarity (a model trained on
      both gets no polarity warning).
    * bit depth: named only alongside another warning. Grey levels are compared as fractions of
      the peak and the network sees [0, 1] values either way, so a 16-bit image of an 8-bit
      model's data is in its domain; a mismatch is worth naming when the grey levels are off,
      because a 12-bit camera image stored in 16 bits is their commonest cause.
    """
    if not domain:
        return []
    warnings = []
    for key, label in (("mean_grey", "mean grey"), ("background", "background")):
        if _has(domain, stats, key):
            low, high = domain[f"{key}_p05"], domain[f"{key}_p95"]
            margin = max(MIN_MARGIN, high - low)
            warnings += _outside(label, stats[key], domain, key, low - margin, high + margin)
    if _has(domain, stats, "grey_spread"):
        warnings += _outside("grey spread", stats["grey_spread"], domain, "grey_spread",
                             domain["grey_spread_p05"] / SPREAD_FACTOR, domain["grey_spread_p95"] * SPREAD_FACTOR)
    polarity = stats.get("polarity")
    if (domain.get("polarity") and polarity and polarity != domain["polarity"]
            and domain.get("polarity_share", 1.0) >= POLARITY_SHARE
            and abs(stats.get("background", 0.0) - stats.get("mean_grey", 0.0)) >= POLARITY_CONTRAST):
        warnings.append(f"polarity {polarity}, model trained on {domain['polarity']}")
    if warnings and domain.get("bit_depth") and stats.get("bit_depth") and stats["bit_depth"] != domain["bit_depth"]:
        warnings.append(f"bit depth {stats['bit_depth']}, model trained on {domain['bit_depth']}")
    return warnings


def describe(domain: Mapping) -> list[str]:
    """A domain block as a few readable lines (``karyosr info``)."""
    size = domain.get("pixel_size_um")
    lines = [f"{domain.get('image_count', '?')} training images of dataset {domain.get('dataset') or 'unknown'}, "
             f"{domain.get('bit_depth', '?')} bit, pixel size "
             + (f"{size:g} um" if size is not None else "unknown")]
    ranges = []
    for key, label in (("mean_grey", "mean grey"), ("grey_spread", "grey spread"), ("background", "background")):
        if key in domain:
            span = (f" ({domain[f'{key}_p05']:.3f}-{domain[f'{key}_p95']:.3f})"
                    if f"{key}_p05" in domain and f"{key}_p95" in domain else "")
            ranges.append(f"{label} {domain[key]:.3f}{span}")
    if ranges:
        lines.append(", ".join(ranges) + " of the peak (median, p05-p95)")
    if domain.get("polarity"):
        share = domain.get("polarity_share")
        lines.append(f"polarity {domain['polarity']}" + (f" ({share:.0%} of the images)" if share is not None else ""))
    return lines


__all__ = ["compare", "dataset_facts", "describe", "domain_record", "image_statistics"]
