"""Tests for karyosr.dataset.degrade: LR synthesis, per-image seeding, recorded parameters, run()."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from karyosr.dataset.degrade import IDENTITY_COLUMNS, KERNELS, degrade_image, degrade_images, downscale, image_rng, run
from karyosr.io import shards
from karyosr.resize import imresize


def profile(**changes):
    base = {"scale": 4, "kernel": "bicubic", "blur_sigma": 0, "noise": "none", "noise_sigma": 0,
            "poisson_peak": 255}
    return {**base, **changes}


def hr_image(seed=0, size=64, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    peak = np.iinfo(dtype).max
    smooth = cv2.GaussianBlur(rng.random((size, size)), (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return np.rint(0.1 * peak + 0.8 * peak * smooth).astype(dtype)


def degrade(hr, prof, image_id="d/g/a", seed=0, name="p"):
    return degrade_image(hr, prof, image_rng(seed, name, image_id))


# --------------------------------------------------------------------------- sizes and kernels


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("kernel", KERNELS)
def test_output_size(scale, kernel):
    hr = hr_image(size=48)
    lr, rec = degrade(hr, profile(scale=scale, kernel=kernel))
    assert lr.shape == (48 // scale, 48 // scale)
    assert lr.dtype == np.uint8
    assert rec["scale"] == scale and rec["kernel"] == kernel


def test_non_square_size():
    hr = np.zeros((64, 32), np.uint8)
    lr, _ = degrade(hr, profile(scale=4))
    assert lr.shape == (16, 8)


def test_kernels_are_the_schema_enum():
    assert set(KERNELS) == {"bicubic", "cv2_bicubic", "bilinear", "area", "nearest", "lanczos"}


def test_bicubic_is_matlab_imresize_and_cv2_bicubic_is_opencv():
    hr = hr_image()
    lr, _ = degrade(hr, profile(scale=4, kernel="bicubic"))
    np.testing.assert_array_equal(lr, np.clip(np.rint(imresize(hr.astype(np.float32), 0.25)), 0, 255))
    lr, _ = degrade(hr, profile(scale=4, kernel="cv2_bicubic"))
    opencv = cv2.resize(hr.astype(np.float32), (16, 16), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(lr, np.clip(np.rint(opencv), 0, 255))


def test_bicubic_filters_detail_finer_than_the_lr_grid_cv2_bicubic_aliases_it():
    # 0.2 cycles/px is above the x4 LR Nyquist limit (0.125 cycles/HR px): an antialiased
    # reduction removes it, point-sampling OpenCV INTER_CUBIC folds it back almost undamped.
    amplitude = 100
    stripes = 128 + amplitude * np.sin(2 * np.pi * 0.2 * np.arange(96))
    hr = np.rint(np.tile(stripes, (96, 1))).astype(np.uint8)
    inner = slice(3, -3)  # away from the mirrored borders
    lr, _ = degrade(hr, profile(scale=4, kernel="bicubic"))
    assert np.ptp(lr[:, inner].astype(float)) / 2 < 0.2 * amplitude
    aliased, _ = degrade(hr, profile(scale=4, kernel="cv2_bicubic"))
    assert np.ptp(aliased[:, inner].astype(float)) / 2 > 0.8 * amplitude


def test_bicubic_of_a_size_not_divisible_by_scale_keeps_the_exact_scale():
    # 50 // 4 = 12 LR pixels, each over 4 HR pixels: the first 12 of MATLAB's
    # imresize(hr, 1/4) (which would give ceil(12.5) = 13), not a 50 -> 12 resize (scale 0.24).
    hr = hr_image(size=50)
    lr, _ = degrade(hr, profile(scale=4, kernel="bicubic"))
    full = imresize(hr.astype(np.float32), 0.25)
    assert full.shape == (13, 13) and lr.shape == (12, 12)
    np.testing.assert_array_equal(lr, np.clip(np.rint(full[:12, :12]), 0, 255))


def test_unknown_kernel_names_the_choices():
    with pytest.raises(ValueError, match=r"degrade kernel 'cubic': expected one of bicubic, cv2_bicubic, bilinear"):
        downscale(np.zeros((8, 8), np.float32), 2, "cubic")


def test_area_kernel_is_block_mean():
    hr = hr_image()
    lr, _ = degrade(hr, profile(scale=4, kernel="area"))
    expected = hr.astype(np.float64).reshape(16, 4, 16, 4).mean(axis=(1, 3))
    assert np.abs(lr - expected).max() <= 0.5 + 1e-9


def test_no_noise_profile_is_deterministic_without_rng():
    hr = hr_image()
    a, _ = degrade(hr, profile(), image_id="x")
    b, _ = degrade(hr, profile(), image_id="y")
    np.testing.assert_array_equal(a, b)  # nothing random in it


# --------------------------------------------------------------------------- seeding


NOISY = profile(blur_sigma=[0.8, 1.6], noise="gaussian", noise_sigma=[2, 8])


def test_same_seed_profile_id_identical():
    hr = hr_image()
    a, rec_a = degrade(hr, NOISY, "d/g/a", seed=3, name="x4_blur_noise")
    b, rec_b = degrade(hr.copy(), NOISY, "d/g/a", seed=3, name="x4_blur_noise")
    np.testing.assert_array_equal(a, b)
    assert rec_a == rec_b


@pytest.mark.parametrize("change", ["image_id", "seed", "profile"])
def test_different_key_gives_different_noise(change):
    hr = hr_image()
    keys = {"image_id": "d/g/a", "seed": 3, "name": "x4_blur_noise"}
    a, _ = degrade(hr, NOISY, **keys)
    other = dict(keys, **{"image_id": {"image_id": "d/g/b"}, "seed": {"seed": 4},
                          "profile": {"name": "x4_other"}}[change])
    b, _ = degrade(hr, NOISY, **other)
    assert not np.array_equal(a, b)


def test_image_rng_stable():
    # Computed once. The generator must not change across versions: an image must degrade the
    # same way in every run, so these values are part of the contract.
    assert image_rng(0, "x4_blur_noise", "synthetic/c0001/c0001 1a").integers(0, 2**32) == 508169461
    assert image_rng(7, "x2_bicubic", "gband/7/1_1_56131_115966_7").random() == pytest.approx(
        0.9273704055662736, abs=1e-15)
    assert image_rng(0, "p", "a").integers(0, 2**32) != image_rng(0, "p", "b").integers(0, 2**32)
    # keys are separated: ("ab", "c") is not ("a", "bc")
    assert image_rng(0, "ab", "c").integers(0, 2**32) != image_rng(0, "a", "bc").integers(0, 2**32)


def test_degrade_images_independent_of_shard_order():
    images = [hr_image(i) for i in range(4)]
    meta = pd.DataFrame({"image_id": [f"d/g/{i}" for i in range(4)]})
    meta_a, lr_a = degrade_images(meta, images, "p", NOISY, seed=1)
    meta_b, lr_b = degrade_images(meta.iloc[::-1].reset_index(drop=True), images[::-1], "p", NOISY, seed=1)
    by_id_b = dict(zip(meta_b["image_id"], lr_b))
    for image_id, lr in zip(meta_a["image_id"], lr_a):
        np.testing.assert_array_equal(lr, by_id_b[image_id])


# --------------------------------------------------------------------------- ranges and records


def test_ranges_drawn_within_bounds_and_recorded():
    prof = profile(blur_sigma=[0.8, 1.6], noise="gaussian", noise_sigma=[2, 8], jpeg_quality=[30, 40])
    hr = hr_image()
    records = [degrade(hr, prof, f"d/g/{i}")[1] for i in range(40)]
    blur = np.array([r["blur_sigma"] for r in records])
    noise = np.array([r["noise_sigma"] for r in records])
    quality = np.array([r["jpeg_quality"] for r in records])
    assert ((0.8 <= blur) & (blur <= 1.6)).all() and len(set(blur)) > 30
    assert ((2 <= noise) & (noise <= 8)).all() and len(set(noise)) > 30
    assert ((30 <= quality) & (quality <= 40)).all() and len(set(quality)) > 3
    assert all(isinstance(r["jpeg_quality"], int) for r in records)
    assert {r["noise"] for r in records} == {"gaussian"}


def test_fixed_values_recorded():
    _, rec = degrade(hr_image(), profile(blur_sigma=1.25, noise="gaussian", noise_sigma=3, jpeg_quality=70))
    assert rec["blur_sigma"] == 1.25 and rec["noise_sigma"] == 3 and rec["jpeg_quality"] == 70
    _, rec = degrade(hr_image(), profile())
    assert rec["blur_sigma"] == 0 and rec["noise_sigma"] == 0 and rec["jpeg_quality"] == -1
    assert rec["noise"] == "none"


def test_recorded_blur_is_the_blur_applied():
    hr = hr_image()
    lr, rec = degrade(hr, profile(blur_sigma=[0.5, 2.5]), "d/g/z")
    again, _ = degrade(hr, profile(blur_sigma=rec["blur_sigma"]), "d/g/z")
    np.testing.assert_array_equal(lr, again)
    unblurred, _ = degrade(hr, profile(), "d/g/z")
    assert not np.array_equal(lr, unblurred)


def test_gaussian_noise_level():
    hr = np.full((256, 256), 128, np.uint8)
    clean, _ = degrade(hr, profile(scale=2))
    noisy, rec = degrade(hr, profile(scale=2, noise="gaussian", noise_sigma=6))
    diff = noisy.astype(float) - clean
    assert diff.std() == pytest.approx(6, rel=0.1)
    assert abs(diff.mean()) < 0.5


def test_poisson_noise():
    hr = np.full((256, 256), 100, np.uint8)
    clean, _ = degrade(hr, profile(scale=2))
    few, rec = degrade(hr, profile(scale=2, noise="poisson", poisson_peak=20))
    many, _ = degrade(hr, profile(scale=2, noise="poisson", poisson_peak=2000))
    assert rec["noise"] == "poisson"
    err_few = np.abs(few.astype(float) - clean).mean()
    err_many = np.abs(many.astype(float) - clean).mean()
    assert err_few > 3 * err_many > 0
    assert abs(few.astype(float).mean() - 100) < 3  # Poisson keeps the mean
    # expected sd: sqrt(100/255*20)*(255/20) ~ 35.7 grey levels
    assert (few.astype(float) - clean).std() == pytest.approx(np.sqrt(100 / 255 * 20) * 255 / 20, rel=0.15)


def test_jpeg_round_trip():
    hr = hr_image()
    plain, _ = degrade(hr, profile(scale=2))
    jpeg, rec = degrade(hr, profile(scale=2, jpeg_quality=10))
    assert rec["jpeg_quality"] == 10
    assert jpeg.shape == plain.shape and jpeg.dtype == np.uint8
    assert not np.array_equal(jpeg, plain)
    assert np.abs(jpeg.astype(float) - plain).mean() < 20
    better, _ = degrade(hr, profile(scale=2, jpeg_quality=95))
    assert np.abs(better.astype(float) - plain).mean() < np.abs(jpeg.astype(float) - plain).mean()


def test_clipped_to_range():
    hr = np.zeros((64, 64), np.uint8)
    hr[:, 32:] = 255
    lr, _ = degrade(hr, profile(scale=2, noise="gaussian", noise_sigma=40))
    assert lr.min() == 0 and lr.max() == 255


def test_uint16():
    hr = hr_image(dtype=np.uint16)
    lr, rec = degrade(hr, profile(noise="gaussian", noise_sigma=[100, 200]))
    assert lr.dtype == np.uint16 and lr.shape == (16, 16)
    assert lr.max() > 255
    clean, _ = degrade(hr, profile())
    assert 50 < np.abs(lr.astype(float) - clean).mean() < 300
    poisson, _ = degrade(hr, profile(noise="poisson", poisson_peak=100))
    assert poisson.dtype == np.uint16 and poisson.max() > 255
    saturated = np.full((16, 16), 65535, np.uint16)
    top, _ = degrade(saturated, profile(scale=2, noise="gaussian", noise_sigma=5000))
    assert top.max() == 65535 and top.dtype == np.uint16


def test_uint16_record_matches_what_was_done():
    hr = hr_image(dtype=np.uint16)
    with_jpeg, rec = degrade(hr, profile(scale=2, jpeg_quality=10))
    without, _ = degrade(hr, profile(scale=2))
    if rec["jpeg_quality"] != -1:
        assert not np.array_equal(with_jpeg, without), "jpeg_quality recorded but no JPEG applied"


# --------------------------------------------------------------------------- run()


def _stage(tmp_path, n=6):
    images = [hr_image(i) for i in range(n)]
    meta = pd.DataFrame({
        "image_id": [f"d/g{i % 3}/im{i}" for i in range(n)],
        "dataset": "d",
        "group": [f"g{i % 3}" for i in range(n)],
        "label": pd.array([i % 24 for i in range(n)], dtype="Int8"),
        "class_name": [str(i % 24 + 1) for i in range(n)],
        "source": [f"im{i}.png" for i in range(n)],
        "polarity": "dark_on_light",
        "crop_scale": 1.0,
    })
    shards.write_shard(tmp_path / "hr.parquet", meta, images)
    split = meta[["image_id", "group", "label"]].assign(split=["train", "val", "test"] * (n // 3))
    shards.write_table(tmp_path / "split.parquet", split.iloc[::-1])
    return meta, images, split


def test_run_keeps_split_and_identity(tmp_path):
    meta, images, split = _stage(tmp_path)
    prof = dict(profile(blur_sigma=[0.8, 1.6], noise="gaussian", noise_sigma=[2, 8]), name="x4_blur_noise")
    run(tmp_path / "hr.parquet", tmp_path / "split.parquet", "x4_blur_noise", prof, 0, tmp_path / "lr" / "000.parquet")
    lr_meta, lr = shards.read_shard(tmp_path / "lr" / "000.parquet")

    assert list(lr_meta["image_id"]) == sorted(meta["image_id"])
    for column in IDENTITY_COLUMNS:
        assert column in lr_meta.columns, column
    assert {"profile", "scale", "kernel", "blur_sigma", "noise", "noise_sigma", "jpeg_quality"} <= set(lr_meta.columns)
    assert "polarity" not in lr_meta.columns and "crop_scale" not in lr_meta.columns
    assert set(lr_meta["profile"]) == {"x4_blur_noise"}
    assert str(lr_meta["label"].dtype) == "Int8"
    expected_split = split.set_index("image_id")["split"]
    hr_by_id = dict(zip(meta["image_id"], images))
    by_id = meta.set_index("image_id")
    for row, image in zip(lr_meta.itertuples(index=False), lr):
        assert row.split == expected_split[row.image_id]
        assert row.group == by_id.loc[row.image_id, "group"] and row.label == by_id.loc[row.image_id, "label"]
        assert image.shape == (16, 16)
        # the LR is the one degrade_image makes for this image_id, wherever the row sits
        expected, _ = degrade_image(hr_by_id[row.image_id], prof, image_rng(0, "x4_blur_noise", row.image_id))
        np.testing.assert_array_equal(image, expected)


def test_run_rejects_images_missing_from_split(tmp_path):
    meta, _, split = _stage(tmp_path)
    shards.write_table(tmp_path / "split.parquet", split.iloc[1:])
    with pytest.raises(ValueError, match="missing from"):
        run(tmp_path / "hr.parquet", tmp_path / "split.parquet", "p", profile(), 0, tmp_path / "lr.parquet")
    assert not (tmp_path / "lr.parquet").exists()
