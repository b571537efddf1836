"""Seamless tiled inference (sr_infer.predict_tiled): overlapping tiles blended with linear ramps
give the whole-image output, exactly where each tile's context covers the network's receptive
field and within one grey level where it does not; without context the seams show."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from karyosr.sr import archs, infer as sr_infer

CPU = torch.device("cpu")
SCALE = 2


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A wide LR image with structure at every tile border: smoothed noise (band-like blobs of a
    few pixels) on an uneven background."""
    rng = np.random.default_rng(seed)
    blobs = cv2.GaussianBlur(rng.normal(0, 1, (height, width)), (0, 0), 1.5)
    image = 200 - np.linspace(0, 40, width)[None, :] + 60 * blobs / blobs.std()
    return np.clip(image, 0, 255).astype(np.uint8)


def network(arch: str, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return archs.build_sr(arch, SCALE, **options).eval()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return textured(70, 90)[None]


def test_tiles_equal_the_whole_image_where_context_covers_the_receptive_field(image):
    """SRCNN (9-5-5 layers on the bicubic image) sees 4 LR pixels around an output pixel, plus 2
    for the bicubic kernel: with 16 pixels of context, of which the blend ignores the outer 8, the
    tiles hold exactly the whole image's values (rounding aside)."""
    model = network("srcnn", channels=[16, 8])
    whole = sr_infer.predict_tiled(model, image, SCALE, 255.0, CPU, 0)
    tiled = sr_infer.predict_tiled(model, image, SCALE, 255.0, CPU, 24, overlap=16)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1
    assert (tiled == whole).mean() > 0.999


@pytest.mark.parametrize("arch,options", [
    ("esrgan", {"num_feat": 16, "num_block": 2, "num_grow_ch": 8}),
    ("srresnet", {"num_blocks": 4, "num_features": 16, "bicubic_residual": True, "batch_norm": False}),
])
def test_tiles_stay_within_one_grey_level_of_the_whole_image(image, arch, options):
    """Networks that see further than the context (RRDBNet: 30 convolutions; SRResNet) still join
    within a grey level with the default 16 pixels of context, while tiles without context show
    seams of several grey levels."""
    model = network(arch, **options)
    whole = sr_infer.predict_tiled(model, image, SCALE, 255.0, CPU, 0).astype(int)
    tiled = sr_infer.predict_tiled(model, image, SCALE, 255.0, CPU, 24).astype(int)
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).max() <= 1
    no_context = sr_infer.predict_tiled(model, image, SCALE, 255.0, CPU, 24, overlap=0).astype(int)
    assert np.abs(no_context - whole).max() > 1


def test_uneven_tiles_and_batches(image):
    """Image sides that are not multiples of the tile, a last tile narrower than the context and
    several images at once: every pixel is covered, each image is tiled independently."""
    model = network("srcnn", channels=[16, 8])
    batch = np.concatenate([image, image[:, ::-1, ::-1].copy()])
    tiled = sr_infer.predict_tiled(model, batch, SCALE, 255.0, CPU, 31, overlap=8, batch_size=1)
    whole = sr_infer.predict_tiled(model, batch, SCALE, 255.0, CPU, 0)
    assert tiled.dtype == np.uint8 and tiled.shape == (2, 140, 180)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1


def test_ramps_are_a_partition_of_unity():
    """Weights of neighbouring windows sum to one wherever two overlap, and each window's outer
    context does not count."""
    length, tile, overlap = 100, 30, 5
    total = np.zeros(length)
    for start, end in sr_infer._windows(length, tile, overlap):
        weight = sr_infer._ramp(start, end, length, overlap)
        total[start:end] += weight
        if start > 0:  # the outer half of the context is ignored
            assert (weight[: overlap // 2] <= 1e-6).all()
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
