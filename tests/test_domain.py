"""karyosr.domain: the grey-level statistics a model file records of its training images, and the
warnings for an image outside them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from karyosr import domain


def rod_crop(rng, size: int = 48, bright_on_dark: bool = True, dtype=np.uint8) -> np.ndarray:
    """A banded rod of random length and angle in a padded square crop, as crop_filter writes
    them: bright on a dark background (Q-band, fluorescence) or dark on a light one (G-band)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64) - size / 2
    angle = rng.uniform(0, np.pi)
    u = yy * np.cos(angle) + xx * np.sin(angle)
    v = -yy * np.sin(angle) + xx * np.cos(angle)
    inside = (np.abs(u) < size * rng.uniform(0.15, 0.4)) & (np.abs(v) < size * 0.06)
    bands = 0.5 + 0.5 * np.sin(u * rng.uniform(0.5, 1.0))
    if bright_on_dark:
        image = np.where(inside, 120 + 100 * bands, 15)
    else:
        image = np.where(inside, 40 + 100 * bands, 230)
    image = image + rng.normal(0, 3, image.shape)
    peak = 65535 if dtype == np.uint16 else 255
    return np.clip(np.rint(image * peak / 255), 0, peak).astype(dtype)


@pytest.fixture(scope="module")
def dark_domain():
    rng = np.random.default_rng(0)
    images = np.stack([rod_crop(rng) for _ in range(200)])
    return domain.domain_record(images, 255, dataset="qband", pixel_size_um=0.1)


def test_statistics_of_constructed_images():
    image = np.zeros((100, 100), np.uint8)
    image[40:60, 30:70] = 204  # 8 % of the pixels at 0.8 of the peak
    stats = domain.image_statistics(image, 255)
    assert stats["mean_grey"] == pytest.approx(0.064, abs=1e-4)
    assert stats["grey_spread"] == pytest.approx(0.8 * np.sqrt(0.08 * 0.92), abs=1e-4)
    assert stats["background"] == 0 and stats["polarity"] == "light_on_dark"
    assert stats["bit_depth"] == 8 and stats["image_count"] == 1
    assert stats["mean_grey_p05"] == stats["mean_grey_p95"] == stats["mean_grey"]
    # 16 bits: the same fractions of the peak.
    stats16 = domain.image_statistics(image.astype(np.uint16) * 257, 65535)
    assert stats16["bit_depth"] == 16
    assert {k: stats16[k] for k in ("mean_grey", "grey_spread", "background")} == \
           {k: stats[k] for k in ("mean_grey", "grey_spread", "background")}
    # Dark on light: the border is brighter than the mean.
    inverted = domain.image_statistics(255 - image, 255)
    assert inverted["polarity"] == "dark_on_light" and inverted["background"] == 1.0
    assert inverted["mean_grey"] == pytest.approx(1 - 0.064, abs=1e-4)


def test_summaries_over_images_stack_and_list_agree():
    rng = np.random.default_rng(1)
    images = [rod_crop(rng) for _ in range(40)]
    stacked = domain.image_statistics(np.stack(images), 255)
    listed = domain.image_statistics(images + [], 255)
    assert stacked == listed and stacked["image_count"] == 40
    means = [im.mean() / 255 for im in images]
    assert stacked["mean_grey"] == pytest.approx(np.median(means), abs=1e-4)
    assert stacked["mean_grey_p05"] == pytest.approx(np.percentile(means, 5), abs=1e-4)
    assert stacked["mean_grey_p95"] == pytest.approx(np.percentile(means, 95), abs=1e-4)
    assert stacked["mean_grey_p05"] < stacked["mean_grey"] < stacked["mean_grey_p95"]
    assert stacked["polarity"] == "light_on_dark" and stacked["polarity_share"] == 1.0
    # Mixed sizes and polarities: the majority among images with a clear polarity; flat images
    # (a blank field) do not vote.
    mixed = images[:30] + [rod_crop(rng, 64, bright_on_dark=False) for _ in range(10)] + \
        [np.full((30, 20), 128, np.uint8)] * 50
    stats = domain.image_statistics(mixed, 255)
    assert stats["polarity"] == "light_on_dark" and stats["polarity_share"] == 0.75 and stats["image_count"] == 90
    with pytest.raises(ValueError, match="at least one image"):
        domain.image_statistics([], 255)


def test_large_images_are_subsampled_deterministically():
    rng = np.random.default_rng(2)
    tile = np.clip(rng.normal(60, 20, (2100, 1900)), 0, 255).astype(np.uint8)
    tile[:, :100] = 250  # a bright band on the border
    first = domain.image_statistics([tile], 255)
    assert first == domain.image_statistics([tile.copy()], 255)
    full_mean = tile.mean() / 255
    assert first["mean_grey"] == pytest.approx(full_mean, abs=0.005)
    assert first["grey_spread"] == pytest.approx(tile.std() / 255, abs=0.005)


def test_domain_record_and_dataset_facts():
    rng = np.random.default_rng(3)
    record = domain.domain_record([rod_crop(rng) for _ in range(5)], 255, dataset="qband", pixel_size_um=0.1)
    assert record["dataset"] == "qband" and record["pixel_size_um"] == 0.1 and record["image_count"] == 5
    assert domain.domain_record([rod_crop(rng)], 255)["pixel_size_um"] is None
    meta = pd.DataFrame({"dataset": ["b", "a", "a"], "pixel_size_um": [0.1, np.nan, 0.3]})
    assert domain.dataset_facts(meta) == {"dataset": "a, b", "pixel_size_um": 0.2}
    assert domain.dataset_facts(pd.DataFrame({"image_id": ["x"]})) == {"dataset": None, "pixel_size_um": None}


def test_images_of_the_training_data_never_warn(dark_domain):
    rng = np.random.default_rng(4)
    for _ in range(200):
        image = rod_crop(rng)
        assert domain.compare(domain.image_statistics(image, 255), dark_domain) == []
    # 16-bit images of the same data are in the domain: grey levels are fractions of the peak.
    image16 = rod_crop(rng, dtype=np.uint16)
    assert domain.compare(domain.image_statistics(image16, 65535), dark_domain) == []


def test_bright_background_and_grey_photo_warn_naming_the_figures(dark_domain):
    rng = np.random.default_rng(5)
    gband = rod_crop(rng, bright_on_dark=False)
    warnings = domain.compare(domain.image_statistics(gband, 255), dark_domain)
    text = "; ".join(warnings)
    low, high = dark_domain["mean_grey_p05"], dark_domain["mean_grey_p95"]
    assert f"model trained on {dark_domain['mean_grey']:.2f} ({low:.2f}-{high:.2f} over its training images)" in text
    assert text.startswith(f"mean grey {gband.mean() / 255:.2f}")
    assert "polarity dark_on_light, model trained on light_on_dark" in warnings
    assert any(w.startswith("background 0.90") for w in warnings)
    # A grey photograph: mean grey and background, but no polarity (it has none).
    photo = np.clip(rng.normal(180, 6, (300, 400)), 0, 255).astype(np.uint8)
    warnings = domain.compare(domain.image_statistics(photo, 255), dark_domain)
    assert warnings[0].startswith(f"mean grey {photo.mean() / 255:.2f}, model trained on 0.10")
    assert not any("polarity" in w for w in warnings)
    # A 12-bit camera image stored in 16 bits: 1/16 of the spread; the bit depth named with it.
    twelve_bit = (rod_crop(rng).astype(np.uint16) * 16)
    warnings = domain.compare(domain.image_statistics(twelve_bit, 65535), dark_domain)
    assert any(w.startswith("grey spread") for w in warnings)
    assert warnings[-1] == "bit depth 16, model trained on 8"


def test_thresholds_at_their_documented_bounds(dark_domain):
    low, high = dark_domain["mean_grey_p05"], dark_domain["mean_grey_p95"]
    margin = max(domain.MIN_MARGIN, high - low)
    base = {k: dark_domain[k] for k in ("mean_grey", "grey_spread", "background", "polarity", "bit_depth")}
    assert domain.compare({**base, "mean_grey": high + margin - 0.001}, dark_domain) == []
    assert domain.compare({**base, "mean_grey": high + margin + 0.001}, dark_domain)[0].startswith("mean grey")
    spread_low = dark_domain["grey_spread_p05"] / domain.SPREAD_FACTOR
    assert domain.compare({**base, "grey_spread": spread_low * 1.01}, dark_domain) == []
    assert domain.compare({**base, "grey_spread": spread_low * 0.99}, dark_domain)[0].startswith("grey spread")
    # Bit depth alone is no domain shift; a model trained on both polarities gets no polarity warning.
    assert domain.compare({**base, "bit_depth": 16}, dark_domain) == []
    flipped = {**base, "polarity": "dark_on_light", "background": base["mean_grey"] + 0.05}
    assert domain.compare(flipped, dark_domain) == ["polarity dark_on_light, model trained on light_on_dark"]
    assert domain.compare(flipped, {**dark_domain, "polarity_share": 0.8}) == []


def test_no_domain_no_warnings(dark_domain):
    stats = domain.image_statistics(np.full((50, 50), 200, np.uint8), 255)
    assert domain.compare(stats, None) == [] and domain.compare(stats, {}) == []
    # A partial block (an older or hand-written one) checks what it has.
    assert domain.compare(stats, {"polarity": "light_on_dark"}) == []
    lines = domain.describe(dark_domain)
    assert lines[0].startswith("200 training images of dataset qband, 8 bit, pixel size 0.1 um")
    assert "mean grey" in lines[1] and lines[2] == "polarity light_on_dark (100% of the images)"


def test_pixel_size_of_shrunk_crops_grows_by_the_shrink():
    # crop_filter shrank the second crop to half its size: its pixels are twice as large; an SR
    # model trained on such crops records the LR pixel size from them (sr.train.training_domain)
    meta = pd.DataFrame({"pixel_size_um": [0.1, 0.1, None], "crop_scale": [1.0, 0.5, 1.0]})
    assert np.allclose(domain.pixel_sizes_um(meta, factor=4), [0.4, 0.8, np.nan], equal_nan=True)
    assert domain.dataset_facts(meta.iloc[1:])["pixel_size_um"] == 0.2
