"""Shared helpers for the unit tests: small synthetic images and file encoders.

Helpers are handed out as fixtures (``make_rod``, ``encode``) so that test modules do not need
to import this file.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest


def rod(
    shape=(100, 80),
    center=(50, 40),
    length=40,
    width=10,
    angle=0.0,
    bg=220,
    fg=70,
    bands=True,
    band_step=30,
    dtype=np.uint8,
    blur=0.0,
):
    """A straight synthetic chromosome: a ``length`` x ``width`` rectangle along ``angle`` degrees
    from the vertical, of grey level ``fg`` (plus ``band_step`` on every other 4-px band) on a
    flat ``bg`` background. Returns (image, mask of the rod's pixels).

    Values are on the 8-bit scale; for uint16 they are multiplied by 257.
    """
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    t = np.deg2rad(angle)
    u = (yy - center[0]) * np.cos(t) + (xx - center[1]) * np.sin(t)  # along the rod
    v = -(yy - center[0]) * np.sin(t) + (xx - center[1]) * np.cos(t)  # across it
    inside = (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)
    image = np.full(shape, float(bg))
    value = fg + band_step * (np.floor(u / 4) % 2) if bands else np.full(shape, float(fg))
    image[inside] = value[inside]
    if blur:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    scale = 257.0 if dtype == np.uint16 else 1.0
    peak = np.iinfo(dtype).max
    return np.clip(np.rint(image * scale), 0, peak).astype(dtype), inside


def encode_image(image: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok, f"cv2 could not encode {image.dtype} {image.shape} as {ext}"
    return buf.tobytes()


@pytest.fixture
def make_rod():
    return rod


@pytest.fixture
def encode():
    return encode_image


@pytest.fixture
def crop_params():
    """crop_filter parameters spelled out, independent of the schema's current defaults."""
    return {
        "target_size": 64,
        "polarity": "auto",
        "threshold": "otsu",
        "margin": 2,
        "min_component_fraction": 0.1,
        "min_foreground_px": 40,
        "detail_sigma": 1.0,
        "min_detail": 1.0,
        "adaptive_crop": True,
    }


@pytest.fixture(autouse=True, scope="session")
def use_leak_safe_log_records():
    """Overrides napari's pytest plugin (installed with the napari extra), whose session fixture of
    this name turns every log argument but a Python int or float into a string: the package's
    ``%d`` messages with NumPy integers then fail under caplog, which production logging never sees."""
    yield
