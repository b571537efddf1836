"""PIQE (karyosr.quality.piqe): range, monotonic response to blur and noise, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from karyosr.quality.piqe import piqe, piqe_details

from quality_images import degrade, montage


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
