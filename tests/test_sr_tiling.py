"""Seamless tiled inference (sr_infer.predict_tiled): overlapping tiles blended with linear ramps
give the whole-image output, exactly where each tile's context covers the network's receptive
field and within one grey level where it does not; without context the seams show. The blend runs
one tile row at a time, so memory is set by the tile, and the output can stream into a memmap."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch

from karyosr.sr import archs, infer as sr_infer
from karyosr.sr.inference import predict
from karyosr.whole import enhance

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
    ("rrdbnet", {"num_feat": 16, "num_block": 2, "num_grow_ch": 8}),
    ("srresnet", {"num_block": 4, "num_feat": 16, "bicubic_residual": True, "batch_norm": False}),
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


@pytest.mark.parametrize("batch_size", [1, 64])
def test_uneven_tiles_and_batches(image, batch_size):
    """Image sides that are not multiples of the tile, a last tile narrower than the context and
    several images at once, one tile per forward pass or batches that span tile rows and images:
    every pixel is covered, each image is tiled independently."""
    model = network("srcnn", channels=[16, 8])
    batch = np.concatenate([image, image[:, ::-1, ::-1].copy()])
    tiled = sr_infer.predict_tiled(model, batch, SCALE, 255.0, CPU, 31, overlap=8, batch_size=batch_size)
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


def blended_in_whole_image_buffers(model, images: np.ndarray, peak: float, tile: int, overlap: int) -> np.ndarray:
    """The blend as first written, the reference: every tile's weighted output and its 2-D weight
    summed into whole-image float64 buffers, divided at the end."""
    n, h, w = images.shape
    total = np.zeros((n, h * SCALE, w * SCALE))
    weights = np.zeros((h * SCALE, w * SCALE))
    for y0, y1 in sr_infer._windows(h, tile, overlap):
        rows = sr_infer._ramp(y0 * SCALE, y1 * SCALE, h * SCALE, overlap * SCALE)
        for x0, x1 in sr_infer._windows(w, tile, overlap):
            weight = np.outer(rows, sr_infer._ramp(x0 * SCALE, x1 * SCALE, w * SCALE, overlap * SCALE))
            part = predict(model, np.ascontiguousarray(images[:, y0:y1, x0:x1]), SCALE, peak, CPU, rounded=False)
            total[:, y0 * SCALE : y1 * SCALE, x0 * SCALE : x1 * SCALE] += part * weight
            weights[y0 * SCALE : y1 * SCALE, x0 * SCALE : x1 * SCALE] += weight
    return np.clip(np.round((total / weights).astype(np.float32)), 0, peak).astype(images.dtype)


# 16-bit grey levels near the peak are held in float32 to 1/256 of a level, so the network's own
# float32 rounding moves values near k + 0.5 across: its channels-last convolutions (summing in
# another order) alone change 0.1 % of the whole image's 16-bit pixels by one level.
@pytest.mark.parametrize("dtype,peak,equal_share", [(np.uint8, 255.0, 0.999), (np.uint16, 65535.0, 0.995)])
def test_row_by_row_float32_blend_equals_the_whole_image_float64_blend(image, dtype, peak, equal_share):
    """Blending per tile row with separable float32 weights gives the whole-buffer float64 blend's
    output within rounding, 8- and 16-bit, with a network that sees beyond the ignored context (so
    overlapping tiles disagree and the weights matter) and tiles over several rows and columns."""
    model = network("rrdbnet", num_feat=16, num_block=2, num_grow_ch=8)
    images = image.astype(dtype) * (257 if dtype == np.uint16 else 1)
    reference = blended_in_whole_image_buffers(model, images, peak, 24, 16).astype(int)
    tiled = sr_infer.predict_tiled(model, images, SCALE, peak, CPU, 24, overlap=16)
    assert tiled.dtype == dtype
    assert np.abs(tiled.astype(int) - reference).max() <= 1
    assert (tiled == reference).mean() > equal_share


STREAMED_ENHANCEMENT = textwrap.dedent("""
    import json, sys, time, tracemalloc
    import numpy as np, torch
    from torch import nn
    from karyosr.sr import infer

    def peak_resident_bytes():
        # this process's own high-water mark: getrusage's ru_maxrss would carry the parent's over exec
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        return int(status["VmHWM"].split()[0]) * 1024

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.PixelShuffle(2))  # x2, 3 px receptive field
    side, cpu = 4000, torch.device("cpu")
    image = np.random.default_rng(0).integers(0, 256, (1, side, side), dtype=np.uint8)
    infer.predict_tiled(model, image[:, :64, :64], 2, 255.0, cpu, 32)  # torch's one-off set-up, before the baseline
    out = np.lib.format.open_memmap(sys.argv[1], mode="w+", dtype=np.uint8, shape=(1, 2 * side, 2 * side))
    before = peak_resident_bytes()
    tracemalloc.start()  # numpy's buffers are traced, torch's and the memmap's pages are not
    start = time.perf_counter()
    infer.predict_tiled(model, image, 2, 255.0, cpu, 256, out=out)
    seconds = time.perf_counter() - start
    numpy_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss_rise = peak_resident_bytes() - before
    out.flush()
    # a band across a tile row border (LR rows 256-288 are shared by two tile rows), run whole
    band = infer.predict_tiled(model, image[:, 240:300, 1000:1300], 2, 255.0, cpu, 0)[:, 10:-10, 10:-10]
    band_difference = int(np.abs(band.astype(int) - out[:, 490:590, 2010:2590].astype(int)).max())
    print(json.dumps({"seconds": seconds, "numpy_peak": numpy_peak, "rss_rise": rss_rise,
                      "band_difference": band_difference}))
""")


def test_a_4000_px_enhancement_streams_into_a_memmap_in_memory_set_by_the_tile(tmp_path):
    """4,000 x 4,000 LR pixels at x2 (64 Mpx out) in 256 px tiles written into a memory-mapped
    .npy: numpy holds one tile row of float32 rows (576 x 8,000 x 4 B = 18 MB) and what it shares
    with the next, where whole-image float64 sums and weights would hold 2 x 512 MB; the process's
    peak resident memory rises by less than a quarter of that, the written output included."""
    target = tmp_path / "enhanced.npy"
    child = subprocess.run([sys.executable, "-c", STREAMED_ENHANCEMENT, str(target)], capture_output=True,
                           text=True, check=True)
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    whole_image_float64_buffers = 2 * (8000 * 8000 * 8)
    assert measured["numpy_peak"] < whole_image_float64_buffers / 20
    assert measured["rss_rise"] < whole_image_float64_buffers / 4
    assert measured["band_difference"] == 0
    enhanced = np.load(target, mmap_mode="r")
    assert enhanced.shape == (1, 8000, 8000) and enhanced[0, -1].any()


def test_auto_tile_runs_whole_images_that_fit_and_tiles_whose_window_fits_otherwise():
    """The demo MSRResNet at x4: a 96 px crop runs whole; a 3264 x 1840 photo (about 36 GB of
    activations whole) gets the largest tile whose window with its context fits the bound."""
    model = archs.build_sr("srresnet", 4, num_block=4, num_feat=32, bicubic_residual=True,
                           batch_norm=False).eval()
    per_pixel = sr_infer.activation_bytes_per_pixel(model, 4)
    assert per_pixel == sr_infer.ACTIVATION_FACTOR * 128 * 4 * 4  # 128 channels at 2 x 2 per LR pixel, float32
    assert sr_infer.auto_tile((96, 96), 4, model) == 0
    memory = 1 << 30
    tile = sr_infer.auto_tile((1840, 3264), 4, model, memory_bytes=memory, overlap=16)
    assert tile % sr_infer.TILE_STEP == 0
    assert (tile + 32) ** 2 * per_pixel <= memory < (tile + sr_infer.TILE_STEP + 32) ** 2 * per_pixel


def test_the_workflow_tile_setting_auto_runs_small_images_whole(image):
    """whole.enhance.enhance (the workflow's whole-image enhancement) takes tile "auto" as the CLI
    does: an image whose forward pass fits the memory bound is run whole."""
    model = network("srcnn", channels=[16, 8])
    whole = sr_infer.predict_tiled(model, image, SCALE, 255.0, CPU, 0)[0]
    assert sr_infer.tile_for("auto", image.shape, SCALE, model) == 0
    enhanced = enhance.enhance(image[0], SCALE, "srcnn", model, CPU, {"tile": "auto", "tile_overlap": 16})
    assert (enhanced == whole).all()
