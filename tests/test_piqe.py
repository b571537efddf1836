"""PIQE (karyosr.piqe): range, monotonic response to blur and noise, edge cases."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from karyosr import synthetic
from karyosr.piqe import piqe, piqe_details

SIZE = 192
BASE_NOISE = 2.0  # sensor-like noise of "clean" images (the generator's default range is 2-6)


def montage(seed: int, size: int = SIZE, base_noise: float = BASE_NOISE, bg: float = 15.0) -> np.ndarray:
    """Synthetic Q-banded chromosomes packed on a flat background plus Gaussian noise; float 0-255."""
    rng = np.random.default_rng([seed, 42])
    params = {"noise_sigma": [0.0, 0.0], "blur_sigma": [0.4, 0.4], "chr1_length_px": 80, "width_px": 9}
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


@pytest.fixture(scope="module")
def images():
    return [montage(s) for s in (1, 2, 3)]


def _mean_score(images, **kw) -> float:
    return float(np.mean([piqe(degrade(im, seed=i, **kw)) for i, im in enumerate(images)]))


def test_blur_raises_score(images):
    scores = [_mean_score(images, blur=s) for s in (0.0, 0.5, 1.0, 1.5)]
    assert all(b > a for a, b in zip(scores, scores[1:])), scores
    # Heavier blur leaves no spatially active block: the formula's 100, not the flat image's 0.
    for s in (2.0, 3.0):
        for im in images:
            d = piqe_details(degrade(im, blur=s))
            assert d.n_active == 0 and d.score == 100.0


def test_noise_raises_score(images):
    scores = [_mean_score(images, noise=s) for s in (0.0, 5.0, 10.0, 20.0)]
    assert all(b > a for a, b in zip(scores, scores[1:])), scores
    d = piqe_details(degrade(images[0], noise=20.0))
    assert d.n_noise > d.n_active // 2  # most active blocks are flagged as noisy


def test_range_on_varied_content(images):
    rng = np.random.default_rng(0)
    cases = [
        images[0],
        rng.integers(0, 256, (64, 80)).astype(np.uint8),  # white noise
        (rng.random((64, 64)) < 0.02).astype(np.uint8) * 255,  # sparse impulses (MSCN variance > 1)
        np.kron(rng.integers(0, 256, (8, 8)), np.ones((8, 8))).astype(np.uint8),  # blocky
        np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1)),  # smooth ramp
        (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8),  # checkerboard
    ]
    for img in cases:
        s = piqe(img)
        assert isinstance(s, float) and math.isfinite(s) and 0.0 <= s <= 100.0, s


def test_blocking_artefacts_are_noticeable():
    # Texture with 16x16 constant tiles pasted in: active blocks get flat edge segments.
    rng = np.random.default_rng(1)
    texture = np.clip(128 + rng.normal(0, 30, (64, 64)), 0, 255)
    assert piqe_details(texture).n_noticeable == 0
    img = texture.copy()
    img[16:40, 16:40] = 128.0  # a flat patch straddling block borders
    assert piqe_details(img).n_noticeable > 0


@pytest.mark.parametrize(
    "flat",
    [np.full((96, 96), 200, np.uint8), np.zeros((32, 48), np.uint16), np.full((16, 16), 7.25)],
    ids=["uint8", "uint16", "float"],
)
def test_flat_image_is_zero(flat):
    assert piqe(flat) == 0.0
    d = piqe_details(flat)
    assert d.n_active == 0 and d.n_blocks == (flat.shape[0] // 16) * (flat.shape[1] // 16)


@pytest.mark.parametrize("shape", [(15, 100), (100, 15), (8, 8)])
def test_tiny_image_raises_valueerror(shape):
    img = np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)
    with pytest.raises(ValueError, match=rf"{shape[0]}x{shape[1]}.*16x16"):
        piqe(img)


def test_crops_to_whole_blocks_and_accepts_dtypes(images):
    img = np.rint(images[1][:100, :70]).astype(np.uint8)
    assert piqe(img) == piqe(img[:96, :64])
    assert piqe(img.astype(np.uint16) * 257) == pytest.approx(piqe(img), abs=1e-9)
    assert piqe(np.dstack([img] * 3)) == piqe(img)
    with pytest.raises(ValueError):
        piqe(np.full((32, 32), np.inf))
