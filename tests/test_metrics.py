"""Tests for karyosr.quality.full_reference and scoring: PSNR, SSIM (vs an independent reference), MSE, summaries."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.signal import convolve2d

from karyosr.io import shards
from karyosr.quality import full_reference, niqe, scoring
from karyosr.quality.full_reference import PSNR_CAP_DB, data_range, mse, psnr, ssim
from karyosr.quality.scoring import summarise

PARAMS = {"ssim_window": 11, "ssim_sigma": 1.5, "ssim_k1": 0.01, "ssim_k2": 0.03, "foreground_dilation": 0,
          "niqe_patch_size": 16}


def reference_ssim(x, y, peak, window=11, sigma=1.5, k1=0.01, k2=0.03):
    """Wang et al. (2004) as in their MATLAB ssim.m: explicit 2-D Gaussian (fspecial), filter2
    'valid', C1 = (K1 L)^2, C2 = (K2 L)^2, mean of the SSIM map. Written without the module."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    half = (window - 1) / 2.0
    g = np.empty((window, window))
    for i in range(window):
        for j in range(window):
            g[i, j] = math.exp(-((i - half) ** 2 + (j - half) ** 2) / (2 * sigma * sigma))
    g /= g.sum()
    kernel = g[::-1, ::-1]  # filter2 correlates; convolve2d with the flipped kernel correlates

    def filt(a):
        return convolve2d(a, kernel, mode="valid")

    c1, c2 = (k1 * peak) ** 2, (k2 * peak) ** 2
    mu_x, mu_y = filt(x), filt(y)
    sigma_x = filt(x * x) - mu_x**2
    sigma_y = filt(y * y) - mu_y**2
    sigma_xy = filt(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2))
    return float(ssim_map.mean())


def _pair(shape, dtype, noise, seed):
    rng = np.random.default_rng(seed)
    peak = np.iinfo(dtype).max
    x = rng.integers(0, peak + 1, shape, dtype=np.int64)
    y = np.clip(x + rng.normal(0, noise * peak, shape), 0, peak)
    return x.astype(dtype), np.rint(y).astype(dtype)


# --------------------------------------------------------------------------- MSE / PSNR


def test_mse_known():
    a = np.zeros((2, 4, 5), np.uint8)
    b = a.copy()
    b[0] += 3
    b[1, 0, 0] = 255  # no wrap-around in uint8 arithmetic
    np.testing.assert_allclose(mse(a, b), [9.0, 255.0**2 / 20])


def test_psnr_of_known_mse():
    ref = np.full((1, 8, 8), 100, np.uint8)
    test = ref + np.uint8(5)
    expected = 10 * math.log10(255**2 / 25)
    assert psnr(ref, test, 255.0)[0] == pytest.approx(expected, abs=1e-12)
    assert psnr(ref, ref - np.uint8(5), 255.0)[0] == pytest.approx(expected, abs=1e-12)


def test_psnr_uint16_peak():
    ref = np.full((4, 4), 30000, np.uint16)
    test = ref + np.uint16(100)
    assert psnr(ref, test, data_range(np.uint16)) == pytest.approx(10 * math.log10(65535**2 / 100**2))


def test_psnr_identical_is_capped():
    image = np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    values = psnr(image, image.copy(), 255.0)
    assert np.all(values == PSNR_CAP_DB) and PSNR_CAP_DB == 100.0
    assert np.isfinite(values).all()


def test_psnr_batch_per_image():
    ref = np.full((3, 8, 8), 50, np.uint8)
    test = ref.copy()
    test[1] += 10
    test[2] += 1
    values = psnr(ref, test, 255.0)
    assert values[0] == 100.0
    assert values[1] == pytest.approx(10 * math.log10(255**2 / 100))
    assert values[2] == pytest.approx(10 * math.log10(255**2))


def test_data_range():
    assert data_range(np.uint8) == 255.0
    assert data_range(np.dtype("uint16")) == 65535.0


# --------------------------------------------------------------------------- SSIM


def test_ssim_identical_is_one():
    x = np.random.default_rng(0).integers(0, 256, (20, 25), dtype=np.uint8)
    assert ssim(x, x.copy(), 255.0) == pytest.approx(1.0, abs=1e-12)
    flat = np.full((20, 20), 9, np.uint8)
    assert ssim(flat, flat, 255.0) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    "shape, dtype, noise, window, sigma",
    [((32, 32), np.uint8, 0.05, 11, 1.5), ((40, 27), np.uint8, 0.2, 11, 1.5), ((11, 11), np.uint8, 0.1, 11, 1.5),
     ((30, 45), np.uint16, 0.03, 11, 1.5), ((24, 24), np.uint8, 0.1, 7, 1.0), ((24, 19), np.uint8, 0.1, 3, 0.5),
     ((64, 64), np.uint8, 0.02, 11, 1.5)],
)
def test_ssim_matches_reference(shape, dtype, noise, window, sigma):
    for seed in range(3):
        x, y = _pair(shape, dtype, noise, seed)
        peak = data_range(dtype)
        got = ssim(x, y, peak, window, sigma)
        assert abs(float(got) - reference_ssim(x, y, peak, window, sigma)) < 1e-10


def test_ssim_matches_reference_custom_constants():
    x, y = _pair((30, 30), np.uint8, 0.1, 7)
    got = ssim(x, y, 255.0, 11, 1.5, k1=0.05, k2=0.1)
    assert abs(float(got) - reference_ssim(x, y, 255.0, 11, 1.5, 0.05, 0.1)) < 1e-10


def test_ssim_batch_matches_single():
    pairs = [_pair((20, 30), np.uint8, 0.1, s) for s in range(4)]
    xs, ys = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    batch = ssim(xs, ys, 255.0)
    assert batch.shape == (4,)
    for i, (x, y) in enumerate(pairs):
        assert abs(batch[i] - reference_ssim(x, y, 255.0)) < 1e-10


@pytest.mark.parametrize("window", [4, 8])
def test_ssim_even_window_is_refused(window):
    x, y = _pair((30, 30), np.uint8, 0.1, 0)
    with pytest.raises(ValueError, match="odd"):
        ssim(x, y, 255.0, window, 1.5)


def test_ssim_symmetric():
    x, y = _pair((30, 30), np.uint8, 0.1, 3)
    assert ssim(x, y, 255.0) == pytest.approx(ssim(y, x, 255.0), abs=1e-14)


def test_ssim_decreases_with_noise():
    rng = np.random.default_rng(5)
    x = np.clip(rng.normal(128, 30, (48, 48)), 0, 255).astype(np.uint8)
    noise = rng.normal(0, 1, x.shape)
    values = [float(ssim(x, np.clip(np.rint(x + s * noise), 0, 255).astype(np.uint8), 255.0))
              for s in (0, 2, 5, 10, 20, 40)]
    assert values[0] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert -1 <= values[-1] < 0.8


@pytest.mark.parametrize("shape", [(10, 30), (30, 10), (5, 5)])
def test_ssim_too_small_raises(shape):
    x = np.zeros(shape, np.uint8)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x, x, 255.0)


def test_gaussian_window():
    w = full_reference.gaussian_window(11, 1.5)
    assert w.shape == (11,) and w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(w, w[::-1])
    assert w.argmax() == 5


# --------------------------------------------------------------------------- score / run / summarise


def test_score():
    x, y = _pair((16, 16), np.uint8, 0.1, 0)
    table = full_reference.score(x[None], y[None], PARAMS, np.ones((1, 16, 16), bool))
    assert list(table.columns) == ["psnr", "ssim", "mse", "psnr_fg", "ssim_fg", "mse_fg"]
    # With the whole image as foreground, the foreground figures are the whole-image ones.
    for name in ("psnr", "ssim", "mse"):
        assert table.loc[0, f"{name}_fg"] == pytest.approx(table.loc[0, name])
    assert table.loc[0, "ssim"] == pytest.approx(reference_ssim(x, y, 255.0), abs=1e-10)
    assert table.loc[0, "mse"] == pytest.approx(((x.astype(float) - y) ** 2).mean())


def test_background_only_method_scores_high_whole_image_and_low_foreground():
    hr = np.full((1, 64, 64), 10, np.uint8)
    hr[0, 24:40, 28:36] = np.tile([200, 120], 64)[:128].reshape(16, 8)  # a banded "chromosome"
    flat = hr.copy()
    flat[0, 24:40, 28:36] = 160  # background perfect, bands lost
    masks = full_reference.foreground_masks(hr, ["light_on_dark"], [60.0], dilation=2)
    assert masks[0][24:40, 28:36].all() and 16 * 8 < masks[0].sum() <= 20 * 12  # the object grown by 2 px
    table = full_reference.score(hr, flat, {**PARAMS, "ssim_window": 7}, masks)
    assert table.loc[0, "psnr"] > 25
    assert table.loc[0, "psnr_fg"] < table.loc[0, "psnr"] - 10
    assert table.loc[0, "ssim_fg"] < table.loc[0, "ssim"]


def test_no_reference_scores_and_flat_image_reason():
    rng = np.random.default_rng(0)
    textured = [np.clip(rng.normal(120, 40, (64, 64)), 0, 255).astype(np.uint8) for _ in range(4)]
    pristine = niqe.PristineModel(*niqe.fit_pristine(textured, patch_size=16), "paper", 16)
    table = scoring.no_reference(textured[:2] + [np.full((64, 64), 7, np.uint8)], pristine)
    assert np.isfinite(table["niqe"].iloc[:2]).all() and (table["niqe_error"].iloc[:2] == "").all()
    assert np.isnan(table["niqe"].iloc[2]) and "flat" in table["niqe_error"].iloc[2]
    assert table["piqe"].between(0, 100).all()


def _pristine(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "pristine.npz"
    mu, cov = niqe.fit_pristine([rng.integers(0, 256, (64, 64)).astype(np.uint8) for _ in range(3)], patch_size=16)
    niqe.save_model(path, niqe.PristineModel(mu, cov, "paper", 16))
    return path


def test_run_matches_sr_to_hr(tmp_path):
    rng = np.random.default_rng(0)
    hr = {f"d/g/{i}": rng.integers(0, 256, (16, 16), dtype=np.uint8) for i in range(4)}
    shards.write_shard(tmp_path / "hr.parquet", pd.DataFrame({"image_id": list(hr), "polarity": "light_on_dark",
                                                              "threshold_level": 100.0}), list(hr.values()))
    ids = ["d/g/2", "d/g/0"]
    sr = [np.clip(hr[i].astype(int) + 3, 0, 255).astype(np.uint8) for i in ids]
    sr_meta = pd.DataFrame({"image_id": ids, "label": pd.array([1, 2], dtype="Int8"), "class_name": ["2", "3"],
                            "profile": "x4", "method": "nearest"})
    shards.write_shard(tmp_path / "sr.parquet", sr_meta, sr)
    scoring.run(tmp_path / "hr.parquet", tmp_path / "sr.parquet", PARAMS, _pristine(tmp_path), tmp_path / "m.parquet")
    table = shards.read_table(tmp_path / "m.parquet")
    assert set(scoring.METRIC_COLUMNS) <= set(table.columns)
    assert list(table["image_id"]) == ["d/g/0", "d/g/2"]
    for row in table.itertuples():
        expected = np.clip(hr[row.image_id].astype(int) + 3, 0, 255)
        assert row.mse == pytest.approx(((expected - hr[row.image_id]) ** 2).mean())
        assert row.ssim == pytest.approx(reference_ssim(hr[row.image_id], expected, 255.0), abs=1e-10)


def test_run_missing_hr(tmp_path):
    shards.write_shard(tmp_path / "hr.parquet", pd.DataFrame({"image_id": ["a"]}), [np.zeros((16, 16), np.uint8)])
    shards.write_shard(tmp_path / "sr.parquet", pd.DataFrame({"image_id": ["zz"], "label": [1], "class_name": ["2"],
                                                              "profile": "p", "method": "m"}),
                       [np.zeros((16, 16), np.uint8)])
    with pytest.raises(ValueError, match="zz"):
        scoring.run(tmp_path / "hr.parquet", tmp_path / "sr.parquet", PARAMS, tmp_path / "none.npz", tmp_path / "m.parquet")


def test_summarise():
    per_image = pd.DataFrame({
        "profile": ["x2", "x2", "x2", "x4", "x4", "x2"],
        "method": ["bicubic", "bicubic", "bicubic", "bicubic", "bicubic", "nearest"],
        "psnr": [30.0, 32.0, 34.0, 25.0, 27.0, 20.0],
        "ssim": [0.9, 0.8, 0.7, 0.5, 0.7, 0.4],
        "mse": [1.0, 2.0, 3.0, 4.0, 6.0, 9.0],
    })
    for column in scoring.METRIC_COLUMNS[3:]:
        per_image[column] = per_image["mse"]
    per_image.loc[0, "niqe"] = np.nan  # an image NIQE could not score
    summary = summarise(per_image)
    assert list(zip(summary["profile"], summary["method"])) == [("x2", "bicubic"), ("x2", "nearest"),
                                                                ("x4", "bicubic")]
    row = summary.iloc[0]
    assert row["psnr_mean"] == pytest.approx(32.0) and row["psnr_std"] == pytest.approx(2.0)
    assert row["ssim_mean"] == pytest.approx(0.8) and row["ssim_std"] == pytest.approx(0.1)
    assert row["mse_mean"] == pytest.approx(2.0) and row["n_images"] == 3
    assert summary.iloc[1]["n_images"] == 1 and np.isnan(summary.iloc[1]["psnr_std"])
    assert summary.iloc[2]["mse_mean"] == pytest.approx(5.0)
    assert row["niqe_mean"] == pytest.approx(2.5)
    assert summary["n_images"].sum() == len(per_image)
    assert {"psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "mse_mean", "mse_std", "n_images"} <= set(summary.columns)
