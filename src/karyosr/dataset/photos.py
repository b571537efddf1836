"""Synthetic bright-field metaphase *photographs*: colour JPEGs as a microscope camera writes them.

Each photo is one field of a G-banded slide: 0 or 1 metaphase spread of 46 chromosomes (a share
``spreads_fraction`` of a slide's photos holds one, a different cell each, so a slide has a few),
interphase nuclei and debris. The objects and their rendering are those of
:mod:`karyosr.dataset.spreads` (:func:`~karyosr.dataset.spreads.build_slide`, the chromosome,
nucleus and debris sprites, :func:`~karyosr.dataset.spreads.render_signal` with the optical PSF,
:func:`~karyosr.dataset.spreads.illumination_gain`); the field unit is one photo pixel.

The stain signal becomes light the bright-field way: per channel the lamp's light (a grey level
with the slide's colour cast: warm or bluish, the channels a few % apart) times the uneven
illumination (gradient and vignetting) times the stain's transmission ``10**(-od_c * signal)``
(Beer-Lambert; Giemsa absorbs green most, so chromosomes and nuclei are dark purple-grey), then
sensor noise (partly shared by the channels, partly per channel), 8-bit rounding, and a JPEG of
quality drawn in ``jpeg_quality``. A share ``warning_fraction`` of the files carries a few garbage
bytes between the end of the scan data and the end-of-image marker, as some camera files do:
libjpeg decodes them with the warning ``Corrupt JPEG data: N extraneous bytes before marker 0xd9``
(bytes appended *after* the end-of-image marker are never read, so they would raise no warning).

Memory is a few float32 planes of the photo (signal, gain, one channel, noise: about 100 MB at
3264 x 1840) plus the sprites. Everything is deterministic from the seed: the same bytes twice.
:func:`generate_photos` writes ``<slide>/<slide>_<nnn>.jpg``.
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np
import pandas as pd

from karyosr.dataset import spreads
from karyosr.io.atomic import atomic_dir

DEFAULTS: dict = {
    "n_slides": 3,
    "photos_per_slide": 4,         # the benchmark uses 30+
    "size": [768, 1024],           # [height, width] of every photo (the real camera: [1840, 3264])
    "chr1_length_px": None,        # chromosome 1 length in photo pixels, number or [low, high] drawn per
                                   # spread; null: [60, 80] x (short side / 768), the same look at any size
    "band_style": "g",             # bright-field G-banding (the only look of a photo)
    "male_fraction": 0.5,
    "spreads_fraction": 0.75,      # share of a slide's photos that hold a metaphase spread
    "nuclei_per_photo": 3.0,       # mean interphase nuclei over a photo's field (besides 0-2 beside a spread)
    "debris_per_mpx": 40.0,        # debris specks per 10^6 photo pixels
    "background": [150.0, 205.0],  # grey level of the lamp light at the optical centre, per slide
    "colour_cast": 0.06,           # max relative difference of the lamp's channels (warm or bluish), per slide
    "stain_od": [0.45, 0.7],       # optical density (green) of a dark band, per slide
    "jpeg_quality": [80, 95],      # drawn per photo (inclusive)
    "noise_sigma": [1.5, 4.0],     # sensor noise per photo, grey levels
    "blur": [0.8, 1.6],            # optical PSF sigma per photo, photo pixels
    "illumination": 0.3,           # max relative gradient / vignetting of a photo
    "warning_fraction": 0.0,       # share of files with garbage bytes before the JPEG end marker
}

_PHOTO_KEY = 0x50484F54  # stream tag of the photos ("PHOT")
_LN10 = math.log(10.0)
# Giemsa absorbance of the blue and red channels relative to green (BGR order: B, G, R).
_ABSORB_B = (0.55, 0.75)
_ABSORB_R = (0.65, 0.85)


def _fail(msg: str):
    raise ValueError(f"photos: {msg}")


def _range(p: dict, key: str, cast=float, lo=None, hi=None) -> tuple:
    a, b = spreads._pair(p[key], key, cast, who="photos")
    if (lo is not None and a < lo) or (hi is not None and b > hi):
        _fail(f"{key} must lie in [{lo}, {hi}], got {p[key]!r}")
    return a, b


def resolve_params(params: dict | None) -> dict:
    """DEFAULTS overlaid with ``params``; names the key and the expected value on any error."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        _fail(f"unknown parameter(s): {', '.join(map(str, unknown))}; known: {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if p["band_style"] != "g":
        _fail(f"band_style must be 'g' (bright-field G-banding), got {p['band_style']!r}")
    for key in ("n_slides", "photos_per_slide"):
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < 0:
            _fail(f"{key} must be an integer >= 0, got {v!r}")
        p[key] = int(v)
    size = p["size"]
    size = [size, size] if isinstance(size, int) and not isinstance(size, bool) else size
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 64 for v in size)):
        _fail(f"size must be [height, width] in pixels, each >= 64, got {p['size']!r}")
    p["size"] = (int(size[0]), int(size[1]))
    if p["chr1_length_px"] is None:
        scale = min(p["size"]) / 768.0
        p["chr1_length_px"] = (60.0 * scale, 80.0 * scale)
    else:
        p["chr1_length_px"] = _range(p, "chr1_length_px", float, 8.0, 0.5 * min(p["size"]))
    for key, lo, hi in (("male_fraction", 0.0, 1.0), ("spreads_fraction", 0.0, 1.0),
                        ("warning_fraction", 0.0, 1.0), ("illumination", 0.0, 0.9),
                        ("colour_cast", 0.0, 0.3), ("nuclei_per_photo", 0.0, 100.0),
                        ("debris_per_mpx", 0.0, 1e4)):
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            _fail(f"{key} must be a number in [{lo}, {hi}], got {v!r}")
        p[key] = float(v)
    p["background"] = _range(p, "background", float, 20.0, 250.0)
    p["stain_od"] = _range(p, "stain_od", float, 0.01, 2.0)
    p["jpeg_quality"] = _range(p, "jpeg_quality", int, 1, 100)
    p["noise_sigma"] = _range(p, "noise_sigma", float, 0.0, 50.0)
    p["blur"] = _range(p, "blur", float, 0.3, 20.0)
    return p


def _slide_style(seed: int, slide: int, p: dict) -> dict:
    """What the photos of a slide share: the lamp's grey level and colour cast, the stain."""
    rng = np.random.default_rng([seed, _PHOTO_KEY, slide, 1])
    level = rng.uniform(*p["background"])
    cast = p["colour_cast"]
    warm = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.0) * cast  # > 0 warm (red up), < 0 bluish
    tint = np.array([1.0 - warm, 1.0 + rng.uniform(-0.3, 0.3) * cast, 1.0 + warm])  # B, G, R
    od = rng.uniform(*p["stain_od"])
    absorb = np.array([rng.uniform(*_ABSORB_B), 1.0, rng.uniform(*_ABSORB_R)])
    return {"light": level * tint / tint.max(), "od": od * absorb}


def _field_params(p: dict, rng: np.random.Generator) -> dict:
    """spreads.build_slide parameters for one photo (the field unit is one photo pixel)."""
    h, w = p["size"]
    chr1 = rng.uniform(*p["chr1_length_px"])
    return {
        "view_px": (h, w),
        "spread_offset": 0.15,
        "chr1_length_px": chr1,
        "width_px": 0.12 * chr1,
        "male_fraction": p["male_fraction"],
        "spread_density": rng.uniform(0.1, 0.2),
        "nuclei": (0, 2),
        "nucleus_radius_px": (0.5 * chr1, 0.85 * chr1),
        "field_nuclei_per_mpx": p["nuclei_per_photo"] / (h * w / 1e6),
        "debris_per_mpx": p["debris_per_mpx"],
    }


def render_photo(p: dict, seed: int, slide: int, index: int, has_spread: bool, style: dict) -> np.ndarray:
    """One photo as a uint8 (height, width, 3) BGR image; ``p`` from :func:`resolve_params`."""
    h, w = p["size"]
    rng = np.random.default_rng([seed, _PHOTO_KEY, slide, 2, index])
    fp = _field_params(p, rng)
    margin = fp["nucleus_radius_px"][1]
    field_box = (-margin, -margin, w + margin, h + margin)
    photo_id = slide * 1_000_000 + index
    sprites = spreads.build_slide(fp, seed, photo_id, field_box, spread=has_spread, key=_PHOTO_KEY)
    psf = rng.uniform(*p["blur"])
    signal = spreads.render_signal(sprites, np.array([[1.0, 0, 0], [0, 1.0, 0]]), (h, w), psf)
    del sprites

    gain = spreads.illumination_gain(rng, (h, w), p["illumination"]).astype(np.float32)
    # exposure: a little jitter, but the brightest background stays below white
    exposure = min(rng.uniform(0.95, 1.05), 250.0 / (float(style["light"].max()) * float(gain.max())))
    od = style["od"] * math.exp(rng.normal(0.0, 0.05))
    sigma = rng.uniform(*p["noise_sigma"])
    noise_rng = np.random.default_rng([seed, _PHOTO_KEY, slide, 3, index])
    shared = noise_rng.standard_normal((h, w), dtype=np.float32)
    shared *= np.float32(0.7 * sigma)
    out = np.empty((h, w, 3), dtype=np.uint8)
    for c in range(3):
        chan = np.multiply(signal, np.float32(-_LN10 * od[c]))
        np.exp(chan, out=chan)
        chan *= gain
        chan *= np.float32(style["light"][c] * exposure)
        chan += shared
        own = noise_rng.standard_normal((h, w), dtype=np.float32)
        own *= np.float32(0.7 * sigma)
        chan += own
        del own
        np.rint(chan, out=chan)
        np.clip(chan, 0, 255, out=chan)
        out[:, :, c] = chan
        del chan
    return out


def encode_jpeg(img: np.ndarray, quality: int, garbage: bytes = b"") -> bytes:
    """JPEG bytes of ``img``; ``garbage`` goes between the scan data and the end-of-image marker."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError("photos: cv2.imencode failed")
    data = buf.tobytes()
    if garbage:
        if data[-2:] != b"\xff\xd9":
            raise OSError("photos: the JPEG does not end with its end-of-image marker")
        data = data[:-2] + garbage + data[-2:]
    return data


def generate_photos(out_dir: str | os.PathLike, params: dict | None, seed: int) -> pd.DataFrame:
    """Write ``n_slides`` x ``photos_per_slide`` photos as ``<slide>/<slide>_<nnn>.jpg`` under ``out_dir``.

    Returns one row per file: file (relative, posix), slide, height, width, jpeg_quality,
    has_spread, trailing_bytes (garbage bytes before the end marker, 0 for a clean file). The
    folder appears complete or not at all (built in a temporary sibling, then renamed).
    """
    p = resolve_params(params)
    seed = int(seed)
    h, w = p["size"]
    n = p["photos_per_slide"]
    rows = []
    with atomic_dir(out_dir) as tmp:
        for s in range(p["n_slides"]):
            slide = f"s{s:03d}"
            style = _slide_style(seed, s, p)
            rng = np.random.default_rng([seed, _PHOTO_KEY, s, 0])
            with_spread = np.zeros(n, dtype=bool)
            # exact shares per slide, halves rounded up (one photo at 0.5 is one, not none)
            with_spread[rng.permutation(n)[:math.floor(p["spreads_fraction"] * n + 0.5)]] = True
            n_warn = math.floor(p["warning_fraction"] * n + 0.5)
            warned = np.zeros(n, dtype=bool)
            warned[rng.permutation(n)[:n_warn]] = True
            (tmp / slide).mkdir(parents=True)
            for k in range(n):
                file_rng = np.random.default_rng([seed, _PHOTO_KEY, s, 4, k])
                quality = int(file_rng.integers(p["jpeg_quality"][0], p["jpeg_quality"][1] + 1))
                garbage = b""
                if warned[k]:
                    # More bytes than libjpeg's Huffman decoder reads ahead, which it would pass over silently.
                    garbage = bytes(file_rng.integers(1, 255, size=int(file_rng.integers(16, 33))).astype(np.uint8))
                img = render_photo(p, seed, s, k, bool(with_spread[k]), style)
                rel = f"{slide}/{slide}_{k:03d}.jpg"
                (tmp / rel).write_bytes(encode_jpeg(img, quality, garbage))
                del img
                rows.append((rel, slide, h, w, quality, bool(with_spread[k]), len(garbage)))
    return pd.DataFrame(rows, columns=["file", "slide", "height", "width", "jpeg_quality", "has_spread",
                                       "trailing_bytes"])
