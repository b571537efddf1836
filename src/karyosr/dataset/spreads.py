"""Synthetic whole metaphase spreads and their magnification series (deterministic from the seed).

A *slide* is a set of objects in a continuous field whose unit is one high-magnification (view)
pixel and whose origin is the view's top-left pixel centre: the 46 chromosomes of one cell (each
drawn by :func:`karyosr.dataset.synthetic.render_chromosome`, so class band patterns match the single
chromosome data), one or two interphase nuclei beside the spread, a faint cytoplasm haze, more
nuclei and debris scattered over the wider field the low magnifications see.

Stain is additive (fluorescence for the Q-band look; optical density for the G-band look, which
is drawn dark on a light background), so a capture is rendered object by object: each object's
signal (a small float32 sprite, already carrying its stain jitter and grain) is blurred by the
capture's optical PSF in field units and warped into the capture's pixel grid (sub-pixel shift,
rotation, true magnification ratio). Low magnifications are drawn on a grid ``oversample`` times
finer and reduced with :func:`karyosr.resize.imresize` (the sensor's pixel integration); then an
uneven illumination, the exposure and the camera noise of that capture are applied. Memory is one
float32 canvas per capture plus the sprites; no field-sized intermediate.

:func:`magnification_series` returns the view, the low-magnification captures and the ground
truth (view -> low-magnification transform, a :class:`karyosr.dataset.registration.Transform` per row)
that only tests and benchmarks read. :func:`generate` writes ``<slide>/<mag>x/<slide>_<mag>x.png``
and the truth CSV.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from karyosr.dataset import synthetic
from karyosr.dataset.registration import Transform
from karyosr.io.atomic import atomic_dir
from karyosr.resize import imresize

DEFAULTS: dict = {
    "n_slides": 2,
    "band_style": "q",
    "male_fraction": 0.5,
    "view_px": 1024,            # side of the high-magnification view (int, or [height, width])
    "low_px": 1024,             # side of every low-magnification capture (same camera by default)
    "view_magnification": 40,   # nominal objective of the view (labels only)
    "ratios": [4, 10],          # nominal view / low magnification ratios (40x -> 10x, 4x)
    "ratio_error": 0.03,        # true ratio = nominal * (1 + U(-e, e))
    "max_rotation_deg": 2.0,
    "chr1_length_px": 90,       # chromosome 1 length in view pixels
    "width_px": 9,
    "spread_density": 0.12,     # chromosome area / spread disc area
    "spread_offset": 0.12,      # spread centre offset from the view centre, fraction of the view side
    "nuclei": [1, 2],           # interphase nuclei beside the spread (inclusive range)
    "nucleus_radius_px": [40, 70],
    "field_nuclei_per_mpx": 0.8,  # nuclei per 10^6 view px^2 over the wider field
    "debris_per_mpx": 30.0,
    "view_psf_sigma": [0.7, 1.2],  # view PSF, view pixels
    "low_psf_sigma": [0.5, 0.8],   # low-magnification PSF, low-magnification pixels
    "noise_sigma": [1.5, 5.0],     # camera noise per capture, grey levels
    "exposure": [0.75, 1.25],
    "illumination": 0.2,           # max relative gradient / vignetting of a capture
    "oversample": 2,
}

_OBJECT_KEY = 0x5350524D  # stream tag of the slide's objects


def _pair(value, key: str, cast=float, who: str = "spreads") -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return cast(value), cast(value)
    try:
        lo, hi = (cast(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: {key} must be a number or a [low, high] pair, got {value!r}") from None
    if not lo <= hi:
        raise ValueError(f"{who}: {key} must be a [low, high] range with low <= high, got {value!r}")
    return lo, hi


def resolve_params(params: dict | None) -> dict:
    """DEFAULTS overlaid with ``params``; names the key and the expected value on any error."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"spreads: unknown parameter(s): {', '.join(map(str, unknown))}; "
                         f"known: {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if p["band_style"] not in ("q", "g"):
        raise ValueError(f"spreads: band_style must be 'q' or 'g', got {p['band_style']!r}")
    p["view_px"] = _pair(p["view_px"], "view_px", int)
    p["low_px"] = _pair(p["low_px"], "low_px", int)
    for key in ("view_px", "low_px"):
        if min(p[key]) < 32:
            raise ValueError(f"spreads: {key} must be >= 32 pixels a side, got {params.get(key, p[key])!r}")
    for key in ("nuclei",):
        p[key] = _pair(p[key], key, int)
        if p[key][0] < 0:
            raise ValueError(f"spreads: {key} must be >= 0, got {p[key]!r}")
    for key in ("nucleus_radius_px", "view_psf_sigma", "low_psf_sigma", "noise_sigma", "exposure"):
        p[key] = _pair(p[key], key)
        if p[key][0] < 0 or (key in ("nucleus_radius_px", "exposure") and p[key][0] <= 0):
            raise ValueError(f"spreads: {key} must be positive, got {p[key]!r}")
    ratios = p["ratios"]
    if not isinstance(ratios, (list, tuple)) or not ratios or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and r > 1 for r in ratios):
        raise ValueError(f"spreads: ratios must be a non-empty list of numbers > 1, got {ratios!r}")
    p["ratios"] = [float(r) for r in ratios]
    for key, lo, hi in (("ratio_error", 0.0, 0.2), ("max_rotation_deg", 0.0, 45.0), ("spread_density", 0.01, 0.6),
                        ("spread_offset", 0.0, 0.5), ("illumination", 0.0, 0.9), ("male_fraction", 0.0, 1.0),
                        ("field_nuclei_per_mpx", 0.0, 1e3), ("debris_per_mpx", 0.0, 1e4)):
        if not lo <= float(p[key]) <= hi:
            raise ValueError(f"spreads: {key} must be in [{lo}, {hi}], got {p[key]!r}")
        p[key] = float(p[key])
    for key in ("chr1_length_px", "width_px", "view_magnification"):
        if not float(p[key]) > 0:
            raise ValueError(f"spreads: {key} must be > 0, got {p[key]!r}")
    if int(p["oversample"]) != p["oversample"] or not 1 <= int(p["oversample"]) <= 4:
        raise ValueError(f"spreads: oversample must be an integer 1..4, got {p['oversample']!r}")
    p["oversample"] = int(p["oversample"])
    if int(p["n_slides"]) != p["n_slides"] or int(p["n_slides"]) < 0:
        raise ValueError(f"spreads: n_slides must be an integer >= 0, got {p['n_slides']!r}")
    vh, vw = p["view_px"]
    lh, lw = p["low_px"]
    for r in p["ratios"]:
        rmax = r * (1 + p["ratio_error"])
        a = math.radians(p["max_rotation_deg"])
        fw = (vw * math.cos(a) + vh * math.sin(a)) / (rmax / (1 + 2 * p["ratio_error"]))
        fh = (vh * math.cos(a) + vw * math.sin(a)) / (rmax / (1 + 2 * p["ratio_error"]))
        if fw + 4 > lw or fh + 4 > lh:
            raise ValueError(f"spreads: at ratio {r:g} the view {vh}x{vw} covers about {fh:.0f}x{fw:.0f} "
                             f"low-magnification pixels, which does not fit in low_px {lh}x{lw}: "
                             "use larger ratios, a larger low_px or a smaller view_px")
    return p


@dataclass(frozen=True)
class Sprite:
    """One object's stain signal (float32, >= 0, zero at the edges) centred at field (x, y)."""

    signal: np.ndarray
    x: float
    y: float


@dataclass
class Series:
    """One slide: the view, its low-magnification captures and the ground truth (tests/benchmarks only)."""

    slide: str
    view: np.ndarray                 # uint8 (H, W)
    view_magnification: float
    low: dict[str, np.ndarray]       # magnification label ("10x") -> uint8 image
    truth: pd.DataFrame              # one row per low capture

    def transform(self, label: str) -> Transform:
        row = self.truth.set_index("magnification").loc[label]
        return Transform(float(row.cx), float(row.cy), float(row.scale), float(row.rotation_deg))


def _mag_label(mag: float) -> str:
    return f"{mag:g}x"


# --------------------------------------------------------------------------------------------
# objects

SPREAD_BANDS_PER_PERCENT = 4.5


def _chromosome_sprites(rng_seed: list[int], p: dict, centre: tuple[float, float]) -> tuple[list[Sprite], float]:
    """46 chromosomes of one cell scattered uniformly over a disc around ``centre``."""
    # A spread's chromosomes lie at any angle and bend more than karyotyping crops; the bands stay
    # as fine as the spreads were designed with (4.5 a percent of the haploid length).
    chrom_params = {"band_style": "q", "chr1_length_px": p["chr1_length_px"], "width_px": p["width_px"],
                    "blur_sigma": [0.0, 0.0], "noise_sigma": [0.0, 0.0], "rotate": True, "max_bend_deg": 35,
                    "band_px": p["chr1_length_px"] / (synthetic.REL_LENGTH[1] * SPREAD_BANDS_PER_PERCENT)}
    cell_rng = np.random.default_rng([*rng_seed, 0])
    style = synthetic._cell_style(cell_rng, synthetic._resolve_params(chrom_params))
    male = bool(cell_rng.random() < p["male_fraction"])
    labels = [lab for lab in range(1, 23) for _ in range(2)] + ([23, 24] if male else [23, 23])
    # Unit signal: the renderer's Q stain (200) on a zero background, without blur or noise.
    style = {**style, "background": 0.0, "stain": 200.0, "blur_sigma": 0.0, "noise_sigma": 0.0}
    signals = []
    for k, lab in enumerate(labels):
        img = synthetic.render_chromosome(lab, np.random.default_rng([*rng_seed, 1, k]), chrom_params, style)
        grain = np.random.default_rng([*rng_seed, 2, k])
        sig = img.astype(np.float32) / 200.0
        # staining noise: per-chromosome stain strength and a fine multiplicative grain
        sig *= np.float32(math.exp(grain.normal(0.0, 0.08)))
        sig *= (1.0 + 0.06 * grain.standard_normal(sig.shape)).astype(np.float32)
        signals.append(np.maximum(sig, 0.0))
    area = sum(float(np.count_nonzero(s > 0.05)) for s in signals)
    radius = math.sqrt(area / (math.pi * p["spread_density"]))
    pos_rng = np.random.default_rng([*rng_seed, 3])
    rho = radius * np.sqrt(pos_rng.random(len(signals)))
    phi = pos_rng.uniform(0.0, 2 * math.pi, len(signals))
    xs, ys = centre[0] + rho * np.cos(phi), centre[1] + rho * np.sin(phi)
    return [Sprite(s, float(x), float(y)) for s, x, y in zip(signals, xs, ys)], radius


def _nucleus_sprite(rng: np.random.Generator, radius: float) -> np.ndarray:
    """Interphase nucleus: a soft ellipse with chromatin texture, signal ~0.4-0.8."""
    ry = radius * rng.uniform(0.75, 1.0)
    ang = rng.uniform(0.0, math.pi)
    half = int(math.ceil(radius)) + 4
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    c, s = math.cos(ang), math.sin(ang)
    u, v = (xx * c + yy * s) / radius, (-xx * s + yy * c) / ry
    r = np.sqrt(u * u + v * v)
    coverage = np.clip((1.0 - r) * radius / 1.5, 0.0, 1.0)
    tex = rng.standard_normal(coverage.shape).astype(np.float32)
    tex = cv2.GaussianBlur(tex, (0, 0), sigmaX=max(1.0, radius / 12))
    tex /= max(float(tex.std()), 1e-6)
    level = rng.uniform(0.4, 0.8)
    return (coverage * level * (1.0 + 0.25 * tex) * (0.85 + 0.15 * (1 - r * r).clip(0))).clip(0).astype(np.float32)


def _blob_sprite(rng: np.random.Generator, radius: float, level: float) -> np.ndarray:
    """Debris / haze: a soft Gaussian-edged ellipse."""
    ry = radius * rng.uniform(0.4, 1.0)
    ang = rng.uniform(0.0, math.pi)
    half = int(math.ceil(2.5 * radius)) + 2
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    c, s = math.cos(ang), math.sin(ang)
    u, v = (xx * c + yy * s) / radius, (-xx * s + yy * c) / ry
    return (level * np.exp(-0.5 * (u * u + v * v) ** 2)).astype(np.float32)


def _scatter(rng: np.random.Generator, density_per_mpx: float, box: tuple[float, float, float, float]):
    x0, y0, x1, y1 = box
    n = int(rng.poisson(density_per_mpx * (x1 - x0) * (y1 - y0) / 1e6))
    return rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)


def build_slide(p: dict, seed: int, slide_index: int, field_box: tuple[float, float, float, float], *,
                spread: bool = True, key: int = _OBJECT_KEY) -> list[Sprite]:
    """All objects of one slide within ``field_box`` (x0, y0, x1, y1 in view pixels).

    ``spread=False``: the field only (nuclei and debris, no metaphase). ``key`` tags the random
    streams, so another generator (karyosr.dataset.photos) draws fields of its own.
    """
    base = [int(seed), int(key), int(slide_index)]
    rng = np.random.default_rng([*base, 10])
    vh, vw = p["view_px"]
    off = p["spread_offset"] * min(vh, vw)
    centre = ((vw - 1) / 2 + rng.uniform(-off, off), (vh - 1) / 2 + rng.uniform(-off, off))
    sprites: list[Sprite] = []
    radius = 0.0
    if spread:
        chroms, radius = _chromosome_sprites([*base, 20], p, centre)
        # cytoplasm haze under the spread (drawn first; additive, so order only matters for float sums)
        sprites.append(Sprite(_blob_sprite(rng, radius * 1.2, rng.uniform(0.03, 0.08)), *centre))
        n_near = int(rng.integers(p["nuclei"][0], p["nuclei"][1] + 1))
        for _ in range(n_near):
            rad = rng.uniform(*p["nucleus_radius_px"])
            dist = radius + rad * rng.uniform(0.6, 1.6)
            ang = rng.uniform(0, 2 * math.pi)
            sprites.append(Sprite(_nucleus_sprite(rng, rad), centre[0] + dist * math.cos(ang),
                                  centre[1] + dist * math.sin(ang)))
        sprites.extend(chroms)
    # the wider field: more nuclei away from the spread, debris everywhere
    xs, ys = _scatter(rng, p["field_nuclei_per_mpx"], field_box)
    for x, y in zip(xs, ys):
        if spread and math.hypot(x - centre[0], y - centre[1]) < radius + 2 * p["nucleus_radius_px"][1]:
            continue
        sprites.append(Sprite(_nucleus_sprite(rng, rng.uniform(*p["nucleus_radius_px"])), float(x), float(y)))
    xs, ys = _scatter(rng, p["debris_per_mpx"], field_box)
    for x, y in zip(xs, ys):
        size = float(np.exp(rng.uniform(math.log(1.5), math.log(8.0))))
        sprites.append(Sprite(_blob_sprite(rng, size, rng.uniform(0.15, 0.9)), float(x), float(y)))
    return sprites


# --------------------------------------------------------------------------------------------
# rendering

def render_signal(sprites: list[Sprite], field_to_canvas: np.ndarray, shape: tuple[int, int],
                  psf_sigma_field: float) -> np.ndarray:
    """Sum of the sprites' signals blurred by a Gaussian PSF (sigma in field units) on a canvas.

    ``field_to_canvas``: 2x3 affine, field (x, y) -> canvas (x, y). Bilinear sampling; the PSF
    (applied in field units before sampling) is also the antialiasing filter, so it should be at
    least ~0.5 canvas pixel. Returns float32 of ``shape``.
    """
    canvas = np.zeros(shape, dtype=np.float32)
    lin = field_to_canvas[:, :2]
    pad = int(math.ceil(3.0 * psf_sigma_field)) + 1
    for sp in sprites:
        sh, sw = sp.signal.shape
        # coarse visibility test before blurring
        half = 0.5 * math.hypot(sh + 2 * pad, sw + 2 * pad)
        cx, cy = field_to_canvas @ np.array([sp.x, sp.y, 1.0])
        reach = half * float(np.abs(lin).sum(axis=1).max())
        if cx + reach < 0 or cy + reach < 0 or cx - reach > shape[1] or cy - reach > shape[0]:
            continue
        sig = cv2.copyMakeBorder(sp.signal, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0.0)
        if psf_sigma_field > 0:
            sig = cv2.GaussianBlur(sig, (0, 0), sigmaX=psf_sigma_field, borderType=cv2.BORDER_CONSTANT)
        ph, pw = sig.shape
        # padded sprite pixel (j, i) -> field (x + j - pad - (sw - 1) / 2, ...)
        s2f = np.array([[1.0, 0.0, sp.x - pad - (sw - 1) / 2.0], [0.0, 1.0, sp.y - pad - (sh - 1) / 2.0], [0, 0, 1.0]])
        m = np.vstack([field_to_canvas, [0, 0, 1.0]]) @ s2f
        pts = np.array([[-0.5, -0.5, 1], [pw - 0.5, -0.5, 1], [pw - 0.5, ph - 0.5, 1], [-0.5, ph - 0.5, 1]]) @ m[:2].T
        x0, y0 = max(0, int(math.floor(pts[:, 0].min())) - 1), max(0, int(math.floor(pts[:, 1].min())) - 1)
        x1 = min(shape[1], int(math.ceil(pts[:, 0].max())) + 2)
        y1 = min(shape[0], int(math.ceil(pts[:, 1].max())) + 2)
        if x1 <= x0 or y1 <= y0:
            continue
        m_roi = m[:2].copy()
        m_roi[:, 2] -= (x0, y0)
        canvas[y0:y1, x0:x1] += cv2.warpAffine(sig, m_roi, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                               borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return canvas


def illumination_gain(rng: np.random.Generator, shape: tuple[int, int], amp: float) -> np.ndarray:
    """Uneven illumination of a capture: a random gradient and an off-centre vignetting, each up
    to ``amp`` (relative); a gain array of ``shape`` (float64), about 1 near the optical centre."""
    h, w = shape
    gx, gy = rng.uniform(-amp, amp, 2)
    vig = rng.uniform(0.0, amp)
    ox, oy = rng.uniform(-0.5, 0.5, 2)
    u = np.linspace(-1.0, 1.0, w, dtype=np.float32)
    v = np.linspace(-1.0, 1.0, h, dtype=np.float32)
    gain_x = 1.0 + 0.5 * gx * u - 0.5 * vig * (u - ox) ** 2
    gain_y = 0.5 * gy * v - 0.5 * vig * (v - oy) ** 2
    return gain_x[None, :] + gain_y[:, None]


def _capture(signal: np.ndarray, rng: np.random.Generator, p: dict, style: dict) -> np.ndarray:
    """Signal -> uint8 capture: stain look, uneven illumination, exposure, camera noise."""
    gain = illumination_gain(rng, signal.shape, p["illumination"])
    exposure = rng.uniform(*p["exposure"])
    sign = 1.0 if p["band_style"] == "q" else -1.0
    if sign < 0:
        # bright-field: the camera is exposed so that the brightest background stays below white
        exposure = min(exposure, 250.0 / (style["background"] * float(gain.max())))
    img = signal * np.float32(sign * style["stain"]) + np.float32(style["background"])
    img *= gain * np.float32(exposure)
    img += rng.normal(0.0, rng.uniform(*p["noise_sigma"]), size=img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def magnification_series(params: dict | None, seed: int, slide_index: int = 0) -> Series:
    """One slide: the high-magnification view and a capture at every ratio in ``params['ratios']``.

    Ground truth per low capture (``Series.truth``): slide, magnification label, nominal_ratio,
    scale (the true ratio), cx, cy (the view centre in low-magnification pixels), rotation_deg,
    psf_sigma (low-magnification pixels), view_h, view_w, low_h, low_w.
    """
    p = resolve_params(params)
    seed = int(seed)
    vh, vw = p["view_px"]
    lh, lw = p["low_px"]
    rng = np.random.default_rng([seed, _OBJECT_KEY, int(slide_index), 1])
    slide = f"s{slide_index:03d}"

    # the captures' geometry first: the field the objects must cover follows from it
    geoms = []
    for r_nom in p["ratios"]:
        ratio = r_nom * (1.0 + rng.uniform(-p["ratio_error"], p["ratio_error"]))
        rot = rng.uniform(-p["max_rotation_deg"], p["max_rotation_deg"])
        a = math.radians(abs(rot))
        fw = (vw * math.cos(a) + vh * math.sin(a)) / ratio
        fh = (vh * math.cos(a) + vw * math.sin(a)) / ratio
        mx, my = max(0.0, 0.4 * (lw - fw - 4)), max(0.0, 0.4 * (lh - fh - 4))
        cx = (lw - 1) / 2 + rng.uniform(-mx, mx)
        cy = (lh - 1) / 2 + rng.uniform(-my, my)
        psf = rng.uniform(*p["low_psf_sigma"])
        geoms.append((r_nom, Transform(float(cx), float(cy), float(ratio), float(rot)), float(psf)))
    field_box = [0.0, 0.0, float(vw), float(vh)]
    for _, t, _ in geoms:
        inv = t.inverse_matrix((vh, vw))
        corners = np.array([[-0.5, -0.5, 1], [lw, -0.5, 1], [lw, lh, 1], [-0.5, lh, 1]]) @ inv.T
        field_box = [min(field_box[0], corners[:, 0].min()), min(field_box[1], corners[:, 1].min()),
                     max(field_box[2], corners[:, 0].max()), max(field_box[3], corners[:, 1].max())]
    sprites = build_slide(p, seed, slide_index, tuple(field_box))
    style_rng = np.random.default_rng([seed, _OBJECT_KEY, int(slide_index), 2])
    if p["band_style"] == "q":
        style = {"background": style_rng.uniform(8.0, 22.0), "stain": 190.0 * style_rng.uniform(0.85, 1.1)}
    else:
        style = {"background": style_rng.uniform(200.0, 235.0), "stain": 165.0 * style_rng.uniform(0.85, 1.1)}

    view_sig = render_signal(sprites, np.array([[1.0, 0, 0], [0, 1.0, 0]]), (vh, vw), rng.uniform(*p["view_psf_sigma"]))
    view = _capture(view_sig, np.random.default_rng([seed, _OBJECT_KEY, int(slide_index), 3]), p, style)
    del view_sig

    low, rows = {}, []
    o = p["oversample"]
    for i, (r_nom, t, psf) in enumerate(geoms):
        # low-magnification coordinate l -> canvas coordinate o * (l + 0.5) - 0.5 (imresize's mapping)
        to_canvas = np.array([[o, 0.0, 0.5 * o - 0.5], [0.0, o, 0.5 * o - 0.5], [0, 0, 1.0]])
        f2c = (to_canvas @ np.vstack([t.matrix((vh, vw)), [0, 0, 1.0]]))[:2]
        sig = render_signal(sprites, f2c, (lh * o, lw * o), psf * t.scale)
        if o > 1:
            sig = imresize(sig, scale=1.0 / o, output_shape=(lh, lw))
        label = _mag_label(p["view_magnification"] / r_nom)
        low[label] = _capture(sig, np.random.default_rng([seed, _OBJECT_KEY, int(slide_index), 4, i]), p, style)
        rows.append({"slide": slide, "magnification": label, "view_magnification": _mag_label(p["view_magnification"]),
                     "nominal_ratio": r_nom, **t.as_dict(), "psf_sigma": psf,
                     "view_h": vh, "view_w": vw, "low_h": lh, "low_w": lw})
    return Series(slide, view, float(p["view_magnification"]), low, pd.DataFrame(rows))


def generate(out_dir: str | os.PathLike, params: dict | None, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``n_slides`` series as ``<slide>/<mag>x/<slide>_<mag>x.png`` under ``out_dir``.

    Returns (files: path, slide, magnification; truth rows). The truth is also written beside the
    images as ``registration_truth.csv`` (read by tests and benchmarks only). The folder appears
    complete or not at all (built in a temporary sibling, then renamed).
    """
    p = resolve_params(params)
    files, truths = [], []
    with atomic_dir(out_dir) as tmp:
        for i in range(int(p["n_slides"])):
            series = magnification_series(params, seed, i)
            images = {_mag_label(series.view_magnification): series.view, **series.low}
            for label, img in images.items():
                rel = f"{series.slide}/{label}/{series.slide}_{label}.png"
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(tmp / rel), img):
                    raise OSError(f"spreads: cv2.imwrite failed for {tmp / rel}")
                files.append((rel, series.slide, label))
            truths.append(series.truth)
        truth = pd.concat(truths, ignore_index=True) if truths else pd.DataFrame()
        truth.to_csv(tmp / "registration_truth.csv", index=False)
    return pd.DataFrame(files, columns=["path", "slide", "magnification"]), truth
