"""Procedurally generated banded single-chromosome images (the embedded default dataset).

Writes the BioImLab layout ``<out_dir>/single_chromosomes/<cell>/<cell> <class><a|b>.bmp``
so the normal ingest path reads it like the real data. Chromosomes come as karyotyping crops
do: upright (long axis vertical, p-arm up, a small bend), unless ``rotate`` turns them at
random.
"""

from __future__ import annotations

import functools
import math
import os

import cv2
import numpy as np
import pandas as pd

from karyosr.io.atomic import atomic_dir

DEFAULTS: dict = {
    "n_cells": 24,
    "male_fraction": 0.38,
    "band_style": "q",
    # Chromosome 1 nearly fills a 64 px crop (crop_filter keeps a 2 px margin).
    "chr1_length_px": 56,
    "width_px": 8,
    "band_px": 3.5,
    "length_jitter": 0.15,
    "stain_jitter": 0.15,
    "blur_sigma": [0.4, 1.2],
    "noise_sigma": [2.0, 6.0],
    "max_bend_deg": 20,
    "rotate": False,
}

# Percent of haploid autosome length (ISCN-like); 23 = X, 24 = Y.
REL_LENGTH = {
    1: 8.4, 2: 8.0, 3: 6.8, 4: 6.3, 5: 6.1, 6: 5.9, 7: 5.4, 8: 4.9, 9: 4.8, 10: 4.6,
    11: 4.6, 12: 4.5, 13: 3.7, 14: 3.6, 15: 3.4, 16: 3.2, 17: 3.0, 18: 2.7, 19: 2.4,
    20: 2.3, 21: 1.6, 22: 1.8, 23: 5.1, 24: 1.9,
}
# Centromere index: p-arm fraction of the length.
CENTROMERE_INDEX = {
    1: 0.48, 2: 0.39, 3: 0.47, 4: 0.29, 5: 0.29, 6: 0.39, 7: 0.39, 8: 0.34, 9: 0.35,
    10: 0.33, 11: 0.40, 12: 0.30, 13: 0.17, 14: 0.18, 15: 0.20, 16: 0.41, 17: 0.34,
    18: 0.31, 19: 0.47, 20: 0.45, 21: 0.30, 22: 0.30, 23: 0.40, 24: 0.30,
}
LABELS = tuple(range(1, 25))

# Fixed entropy for the class band patterns: class identity must not depend on the seed.
_PATTERN_KEY = 0x6B415259
# Fairly regular band widths: at band_px 3.5 the class pattern is resolved at HR (a dark-light
# period of 7 px keeps about half its contrast under the largest default blur) and mostly
# vanishes at x4 LR (1.75 LR px per period, beyond Nyquist) rather than surviving as a few
# coarse blocks.
_BAND_WIDTH_SHAPE = 8.0
# Even chromosomes 21, 22 and Y keep a pattern, not one or two blocks.
_MIN_BANDS = 3


def _resolve_params(params: dict | None) -> dict:
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown synthetic parameter(s): {', '.join(map(str, unknown))}")
    p = {**DEFAULTS, **params}
    if p["band_style"] not in ("q", "g"):
        raise ValueError(f"band_style must be 'q' or 'g', got {p['band_style']!r}")
    if not 0.0 <= float(p["male_fraction"]) <= 1.0:
        raise ValueError(f"male_fraction must be in [0, 1], got {p['male_fraction']!r}")
    if int(p["n_cells"]) < 0:
        raise ValueError(f"n_cells must be >= 0, got {p['n_cells']!r}")
    for key in ("chr1_length_px", "width_px", "band_px"):
        if float(p[key]) <= 0:
            raise ValueError(f"{key} must be > 0, got {p[key]!r}")
    for key in ("blur_sigma", "noise_sigma"):
        lo, hi = (float(v) for v in p[key])
        if not 0.0 <= lo <= hi:
            raise ValueError(f"{key} must be a [low, high] range with 0 <= low <= high, got {p[key]!r}")
    return p


def band_count(label: int, chr1_length_px: float, band_px: float) -> int:
    """Bands of class ``label`` when chromosome 1 is ``chr1_length_px`` long and a band is
    ``band_px`` wide on average: the banding resolution follows the image's, as the band level
    of a real karyotype follows its magnification."""
    return max(_MIN_BANDS, round(float(chr1_length_px) * REL_LENGTH[label] / REL_LENGTH[1] / float(band_px)))


@functools.lru_cache(maxsize=None)
def _class_pattern(label: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` band widths (sum 1) and Q-brightness per band, p-ter to q-ter, fixed per class and n."""
    rng = np.random.default_rng([_PATTERN_KEY, _PATTERN_KEY, label, n])
    widths = rng.gamma(_BAND_WIDTH_SHAPE, size=n)
    widths /= widths.sum()
    phase = rng.integers(2)
    light = rng.uniform(0.7, 1.0, size=n)
    dark = rng.uniform(0.15, 0.5, size=n)
    level = np.where((np.arange(n) + phase) % 2 == 0, light, dark)
    if label == 24:
        # Distal Yq heterochromatin is the brightest Q-band in the karyotype.
        level[np.cumsum(widths) > 0.6] = 1.0
    widths.setflags(write=False)
    level.setflags(write=False)
    return widths, level


def _band_profile(label: int, n: int, rng: np.random.Generator, length: float):
    """Instance band knots (u, brightness) for np.interp: class pattern plus small jitter."""
    widths, level = _class_pattern(label, n)
    widths = widths * np.exp(rng.normal(0.0, 0.15, size=widths.size))
    widths /= widths.sum()
    level = np.clip(level + rng.normal(0.0, 0.04, size=level.size), 0.0, 1.0)
    edges = np.cumsum(widths)[:-1]
    # Band edges are soft at the optical scale, not at the sampling scale.
    delta = min(0.5 / length, 0.25 * widths.min())
    xp = np.concatenate([[0.0], np.column_stack([edges - delta, edges + delta]).ravel(), [1.0]])
    fp = np.concatenate([[level[0]], np.column_stack([level[:-1], level[1:]]).ravel(), [level[-1]]])
    return xp, fp


def _cell_style(rng: np.random.Generator, p: dict) -> dict:
    length_scale = float(np.exp(rng.normal(0.0, p["length_jitter"])))
    sj = float(p["stain_jitter"])
    if p["band_style"] == "q":
        background, stain = rng.uniform(8.0, 25.0), 200.0
    else:
        background, stain = rng.uniform(228.0, 248.0), 170.0
    return {
        "length_scale": length_scale,
        # Condensed (shorter) chromosomes are also a little thicker.
        "width_scale": length_scale ** -0.3,
        "stain": float(stain * np.clip(1.0 + rng.normal(0.0, sj), 0.6, 1.25)),
        "gamma": float(np.exp(rng.normal(0.0, sj))),
        "background": float(background),
        "blur_sigma": float(rng.uniform(*map(float, p["blur_sigma"]))),
        "noise_sigma": float(rng.uniform(*map(float, p["noise_sigma"]))),
    }


def _bend_inverse(x, y, kappa):
    """Output-frame (lateral x, axial y) -> (arc length b from the middle, lateral s)."""
    if abs(kappa) < 1e-6:
        return y, x
    r0 = 1.0 / abs(kappa)
    xm = x * math.copysign(1.0, kappa)
    return r0 * np.arctan2(y, r0 - xm), r0 - np.hypot(xm - r0, y)


def _bend_forward(b, s, kappa):
    if abs(kappa) < 1e-6:
        return s, b
    r0 = 1.0 / abs(kappa)
    phi = b / r0
    x = r0 - (r0 - s) * np.cos(phi)
    return x * math.copysign(1.0, kappa), (r0 - s) * np.sin(phi)


def render_chromosome(label: int, rng: np.random.Generator, params: dict, cell_style: dict) -> np.ndarray:
    """One chromosome of class ``label`` (1..24) as a tightly cropped uint8 image.

    ``cell_style`` carries what the cell's chromosomes share (keys of ``_cell_style``);
    missing keys take neutral values.
    """
    if label not in REL_LENGTH:
        raise ValueError(f"label must be in 1..24, got {label!r}")
    p = _resolve_params(params)
    style = {
        "length_scale": 1.0, "width_scale": 1.0, "stain": 200.0 if p["band_style"] == "q" else 170.0,
        "gamma": 1.0, "background": 15.0 if p["band_style"] == "q" else 240.0,
        "blur_sigma": float(np.mean(p["blur_sigma"])), "noise_sigma": float(np.mean(p["noise_sigma"])),
        **cell_style,
    }

    length = (float(p["chr1_length_px"]) * REL_LENGTH[label] / REL_LENGTH[1] * style["length_scale"]
              * float(np.exp(rng.normal(0.0, float(p["length_jitter"]) / 3.0))))
    length = max(length, 2.0)
    half_w = 0.5 * float(p["width_px"]) * style["width_scale"] * float(np.exp(rng.normal(0.0, 0.05)))
    half_w = min(half_w, 0.5 * length)
    t_cen = length * float(np.clip(CENTROMERE_INDEX[label] + rng.normal(0.0, 0.01), 0.05, 0.95))
    constriction = rng.uniform(0.25, 0.4)
    groove = rng.uniform(0.1, 0.25)
    kappa = math.radians(float(p["max_bend_deg"]) * rng.uniform(-1.0, 1.0)) / length
    theta = rng.uniform(0.0, 2.0 * math.pi) if p["rotate"] else 0.0
    xp, fp = _band_profile(label, band_count(label, p["chr1_length_px"], p["band_px"]), rng, length)
    margins = rng.integers(4, 9, size=4)  # left, right, top, bottom

    # Bounding box of the straight-strip outline after bending and rotation.
    b = np.tile(np.linspace(-0.5 * length, 0.5 * length, 65), 2)
    ox, oy = _bend_forward(b, np.repeat([-half_w, half_w], 65), kappa)
    c, s_ = math.cos(theta), math.sin(theta)
    px, py = ox * c - oy * s_, ox * s_ + oy * c
    x0 = math.floor(px.min()) - 1 - margins[0]
    y0 = math.floor(py.min()) - 1 - margins[2]
    w = math.ceil(px.max()) + 1 + margins[1] - x0
    h = math.ceil(py.max()) + 1 + margins[3] - y0

    gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
    gx += x0 + 0.5
    gy += y0 + 0.5
    bx, by = gx * c + gy * s_, -gx * s_ + gy * c
    arc, lat = _bend_inverse(bx, by, kappa)
    t = arc + 0.5 * length

    # Capsule signed distance with a half-width that narrows at the centromere.
    t_mid = np.clip(t, half_w, length - half_w)
    hw = half_w * (1.0 - constriction * np.exp(-0.5 * ((t_mid - t_cen) / (0.45 * 2 * half_w)) ** 2))
    dist = np.hypot(t - t_mid, lat) - hw
    coverage = np.clip(0.5 - dist, 0.0, 1.0)

    band = np.interp(np.clip(t / length, 0.0, 1.0), xp, fp) ** style["gamma"]
    rel_lat = np.clip(lat / np.maximum(hw, 1e-6), -1.0, 1.0)
    # Rounded cross-section plus a faint groove between the sister chromatids.
    shade = (0.8 + 0.2 * np.sqrt(1.0 - rel_lat**2)) * (1.0 - groove * np.exp(-0.5 * (rel_lat / 0.18) ** 2))
    signal = coverage * shade * (0.25 + 0.75 * band) * style["stain"]

    sign = 1.0 if p["band_style"] == "q" else -1.0
    img = (style["background"] + sign * signal).astype(np.float32)
    if style["blur_sigma"] > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=style["blur_sigma"], borderType=cv2.BORDER_REPLICATE)
    img += rng.normal(0.0, style["noise_sigma"], size=img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _cell_files(cell: str, male: bool) -> list[tuple[int, str]]:
    files = [(lab, f"{cell} {lab}{sfx}.bmp") for lab in range(1, 23) for sfx in "ab"]
    if male:
        # Real BioImLab male cells name the single X and Y without a/b.
        return files + [(23, f"{cell} 23.bmp"), (24, f"{cell} 24.bmp")]
    return files + [(23, f"{cell} 23a.bmp"), (23, f"{cell} 23b.bmp")]


def generate(out_dir: str | os.PathLike, params: dict, seed: int) -> pd.DataFrame:
    """Write the dataset; one row per file: path (relative to out_dir, posix), cell, label, sex."""
    p = _resolve_params(params)
    seed = int(seed)
    n_cells = int(p["n_cells"])
    n_male = round(n_cells * float(p["male_fraction"]))
    male = np.zeros(n_cells, dtype=bool)
    male[np.random.default_rng([seed, 3]).permutation(n_cells)[:n_male]] = True

    rows = []
    with atomic_dir(out_dir) as tmp:
        for ci in range(n_cells):
            cell = f"c{ci:04d}"
            style = _cell_style(np.random.default_rng([seed, 1, ci]), p)
            cell_dir = tmp / "single_chromosomes" / cell
            cell_dir.mkdir(parents=True)
            for k, (label, name) in enumerate(_cell_files(cell, bool(male[ci]))):
                # Seeded per chromosome so output does not depend on iteration order.
                rng = np.random.default_rng([seed, 2, ci, k])
                img = render_chromosome(label, rng, p, style)
                if not cv2.imwrite(str(cell_dir / name), img):
                    raise OSError(f"cv2.imwrite failed for {cell_dir / name}")
                rows.append((f"single_chromosomes/{cell}/{name}", cell, label, "M" if male[ci] else "F"))
    df = pd.DataFrame(rows, columns=["path", "cell", "label", "sex"])
    df["label"] = df["label"].astype("int64")
    return df
