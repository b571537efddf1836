"""Tests for karyosr.sr.upscale: interpolation baselines and their SR shard contract."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from karyosr.config import INTERPOLATION_METHODS as METHODS
from karyosr.dataset.degrade import OPENCV_KERNELS
from karyosr.io import shards
from karyosr.resize import imresize
from karyosr.sr.upscale import SR_COLUMNS, run, select_split, upscale

UNSHARP = {"sigma": 1.0, "amount": 1.0}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_size_and_dtype(method, scale):
    lr = np.random.default_rng(0).integers(0, 256, (5, 7), dtype=np.uint8)
    sr = upscale(lr, scale, method, UNSHARP)
    assert sr.shape == (5 * scale, 7 * scale)
    assert sr.dtype == np.uint8


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("method", ["bicubic", "lanczos"])
def test_overshoot_clipped_to_dtype_range(dtype, method):
    peak = np.iinfo(dtype).max
    lr = np.zeros((8, 8), dtype)
    lr[:, 4:] = peak
    lr[4:, :2] = peak
    if method == "bicubic":
        raw = imresize(lr.astype(np.float32), 4)
    else:
        raw = cv2.resize(lr.astype(np.float32), (32, 32), interpolation=OPENCV_KERNELS[method])
    assert raw.max() > peak and raw.min() < 0  # the kernel really overshoots here
    sr = upscale(lr, 4, method, UNSHARP)
    assert sr.dtype == dtype
    assert sr.min() == 0 and sr.max() == peak
    np.testing.assert_array_equal(sr, np.clip(np.rint(raw), 0, peak).astype(dtype))


def test_uint16_values_kept():
    lr = np.full((4, 4), 40000, np.uint16)
    for method in METHODS:
        sr = upscale(lr, 2, method, UNSHARP)
        assert sr.dtype == np.uint16 and (sr == 40000).all(), method


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_nearest_inverts_nearest_decimation_of_block_image(scale):
    rng = np.random.default_rng(scale)
    blocks = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    hr = np.kron(blocks, np.ones((scale, scale), np.uint8))  # constant scale x scale blocks
    lr = cv2.resize(hr, (5, 6), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(lr, blocks)
    np.testing.assert_array_equal(upscale(lr, scale, "nearest", UNSHARP), hr)


def test_constant_image_stays_constant():
    lr = np.full((6, 6), 77, np.uint8)
    for method in METHODS:
        assert (upscale(lr, 4, method, UNSHARP) == 77).all(), method


def test_bicubic_is_matlab_imresize_not_opencv():
    lr = np.random.default_rng(3).integers(0, 256, (12, 10), dtype=np.uint8)
    sr = upscale(lr, 4, "bicubic", UNSHARP)
    np.testing.assert_array_equal(sr, np.clip(np.rint(imresize(lr.astype(np.float32), 4)), 0, 255))
    opencv = cv2.resize(lr, (40, 48), interpolation=cv2.INTER_CUBIC)
    assert np.abs(sr.astype(int) - opencv).max() > 2  # a = -0.5 vs OpenCV's a = -0.75


def test_bicubic_reproduces_a_linear_ramp_away_from_the_borders():
    # Keys' cubic with a = -0.5 interpolates linear functions exactly; MATLAB's mapping puts the
    # x4 output column c (0-based) at LR coordinate (c + 0.5) / 4 - 0.5, so a ramp 10 + 8 j
    # becomes 10 + 8 ((c + 0.5) / 4 - 0.5) = 7 + 2 c: whole grey levels, no rounding involved.
    lr = np.tile(np.arange(10, 170, 8, dtype=np.uint8), (4, 1))  # 20 columns
    sr = upscale(lr, 4, "bicubic", UNSHARP)
    columns = np.arange(8, 80 - 8)  # all taps (two LR pixels either side) inside the image
    np.testing.assert_array_equal(sr[:, columns], np.tile(7 + 2 * columns, (16, 1)))
    assert sr[0, 0] != 7  # at the border the mirrored taps flatten the ramp


def _lr_shard(tmp_path):
    rng = np.random.default_rng(1)
    meta = pd.DataFrame({
        "image_id": ["d/g1/a", "d/g1/b", "d/g2/c", "d/g3/d"],
        "dataset": "d",
        "group": ["g1", "g1", "g2", "g3"],
        "label": pd.array([0, 1, 22, 23], dtype="Int8"),
        "class_name": ["1", "2", "X", "Y"],
        "split": ["test", "train", "test", "val"],
        "profile": "x4_bicubic",
        "scale": 4,
        "kernel": "bicubic",
        "blur_sigma": 0.0,
    })
    images = [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(4)]
    shards.write_shard(tmp_path / "lr.parquet", meta, images)
    return meta, images


def test_select_split(tmp_path):
    meta, images = _lr_shard(tmp_path)
    sel_meta, sel = select_split(meta, images, "test")
    assert list(sel_meta["image_id"]) == ["d/g1/a", "d/g2/c"]
    assert list(sel_meta.index) == [0, 1]
    np.testing.assert_array_equal(sel[1], images[2])


def test_run(tmp_path):
    meta, images = _lr_shard(tmp_path)
    run(tmp_path / "lr.parquet", "bicubic", UNSHARP, tmp_path / "sr" / "000.parquet")
    sr_meta, sr = shards.read_shard(tmp_path / "sr" / "000.parquet")
    assert list(sr_meta["image_id"]) == ["d/g1/a", "d/g2/c"]
    assert [c for c in sr_meta.columns if c not in ("height", "width", "dtype")] == SR_COLUMNS
    assert set(sr_meta["method"]) == {"bicubic"} and set(sr_meta["profile"]) == {"x4_bicubic"}
    assert set(sr_meta["split"]) == {"test"}
    lr_by_id = dict(zip(meta["image_id"], images))
    for image_id, image in zip(sr_meta["image_id"], sr):
        assert image.shape == (32, 32)
        np.testing.assert_array_equal(image, upscale(lr_by_id[image_id], 4, "bicubic", UNSHARP))


def test_run_other_split_and_empty(tmp_path):
    _lr_shard(tmp_path)
    run(tmp_path / "lr.parquet", "nearest", UNSHARP, tmp_path / "val.parquet", split="val")
    assert list(shards.read_shard_meta(tmp_path / "val.parquet")["image_id"]) == ["d/g3/d"]
    run(tmp_path / "lr.parquet", "nearest", UNSHARP, tmp_path / "none.parquet", split="nonexistent")
    meta, images = shards.read_shard(tmp_path / "none.parquet")
    assert images == [] and len(meta) == 0


def test_unsharp_is_sharper_than_bicubic_and_keeps_flat_areas():
    lr = np.full((16, 16), 40, np.uint8)
    lr[6:10, 4:12] = 200
    bicubic = upscale(lr, 4, "bicubic", UNSHARP).astype(float)
    sharp = upscale(lr, 4, "unsharp", UNSHARP).astype(float)
    assert np.abs(np.diff(sharp, axis=0)).max() > np.abs(np.diff(bicubic, axis=0)).max()
    assert sharp[0, 0] == bicubic[0, 0] == 40
    assert upscale(lr, 4, "unsharp", {"sigma": 1.0, "amount": 0.0}).tolist() == bicubic.astype(np.uint8).tolist()
