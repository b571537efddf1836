"""Tests for karyosr.dataset.crop_filter: polarity, cropping, never-enlarge, padding, quality filters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from karyosr.dataset.crop_filter import (
    border_median,
    crop_filter_image,
    crop_filter_images,
    detail_score,
    detect_polarity,
    foreground_mask,
    run,
)
from karyosr.io import shards
from karyosr.io.images import ImageRejected


@pytest.fixture
def params(crop_params):
    """A fixed threshold between the rods' grey levels (70/100 or 180/210 against 220 or 20), so
    that the geometry tests do not depend on Otsu (see test_otsu_* for that)."""
    return dict(crop_params, threshold=150)



def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


@pytest.mark.parametrize(
    "bg, fg, expected", [(220, 70, "dark_on_light"), (20, 180, "light_on_dark"), (255, 0, "dark_on_light"),
                         (0, 255, "light_on_dark")]
)
def test_detect_polarity(make_rod, bg, fg, expected):
    image, _ = make_rod(bg=bg, fg=fg, band_step=20 if fg < 200 else 0)
    assert border_median(image) == bg
    assert detect_polarity(image, border_median(image)) == expected


@pytest.mark.parametrize("bg, fg, polarity", [(220, 70, "dark_on_light"), (20, 180, "light_on_dark")])
def test_small_rod_cropped_centred_not_enlarged(make_rod, params, bg, fg, polarity):
    image, inside = make_rod(shape=(100, 80), center=(40, 50), length=30, width=8, bg=bg, fg=fg)
    out, rec = crop_filter_image(image, params)
    target, margin = params["target_size"], params["margin"]

    assert out.shape == (target, target) and out.dtype == np.uint8
    assert rec["polarity"] == polarity
    assert rec["crop_scale"] == 1.0
    assert rec["background"] == bg
    assert rec["foreground_px"] == inside.sum()
    y0, y1, x0, x1 = _bbox(inside)
    assert (rec["crop_y0"], rec["crop_y1"], rec["crop_x0"], rec["crop_x1"]) == (
        y0 - margin, y1 + margin, x0 - margin, x1 + margin)

    # the crop sits unscaled in the middle; everything else is the background value
    h, w = rec["crop_y1"] - rec["crop_y0"], rec["crop_x1"] - rec["crop_x0"]
    top, left = rec["pad_top"], rec["pad_left"]
    assert top == (target - h) // 2 and left == (target - w) // 2
    np.testing.assert_array_equal(out[top:top + h, left:left + w],
                                  image[rec["crop_y0"]:rec["crop_y1"], rec["crop_x0"]:rec["crop_x1"]])
    padding = np.ones_like(out, dtype=bool)
    padding[top:top + h, left:left + w] = False
    assert np.all(out[padding] == bg)
    # not enlarged: the object keeps its pixel count
    object_px = (out < (bg + fg) / 2) if polarity == "dark_on_light" else (out > (bg + fg) / 2)
    assert object_px.sum() == inside.sum()


def test_background_is_border_median(make_rod, params):
    image, _ = make_rod(bg=200, fg=60)
    image[0, :5] = 0  # a few odd border pixels do not move the median
    out, rec = crop_filter_image(image, params)
    assert rec["background"] == 200
    assert out[0, 0] == out[-1, -1] == 200


@pytest.mark.parametrize("angle", [0, 30, 60, 90, 135])
def test_crop_box_contains_rotated_object(make_rod, params, angle):
    image, inside = make_rod(shape=(120, 120), center=(60, 60), length=50, width=9, angle=angle)
    out, rec = crop_filter_image(image, params)
    ys, xs = np.nonzero(inside)
    assert rec["crop_y0"] <= ys.min() and ys.max() < rec["crop_y1"]
    assert rec["crop_x0"] <= xs.min() and xs.max() < rec["crop_x1"]
    # and not much more than the object plus margin
    y0, y1, x0, x1 = _bbox(inside)
    m = params["margin"]
    assert rec["crop_y0"] >= y0 - m and rec["crop_y1"] <= y1 + m
    assert rec["crop_x0"] >= x0 - m and rec["crop_x1"] <= x1 + m
    assert out.shape == (64, 64)


def test_large_object_shrunk_keeping_aspect(make_rod, params):
    image, inside = make_rod(shape=(160, 60), center=(80, 30), length=120, width=12)
    out, rec = crop_filter_image(image, params)
    target = params["target_size"]
    crop_h, crop_w = rec["crop_y1"] - rec["crop_y0"], rec["crop_x1"] - rec["crop_x0"]
    assert crop_h == 120 + 1 + 2 * params["margin"]  # the rod spans rows 20..140 inclusive
    assert out.shape == (target, target)
    assert rec["crop_scale"] == pytest.approx(target / max(crop_h, crop_w))
    assert rec["crop_scale"] < 1
    assert rec["pad_top"] == 0  # the longer side now fills the target
    assert rec["pad_left"] == (target - round(crop_w * rec["crop_scale"])) // 2
    dark = out < 150
    rows, cols = np.nonzero(dark)
    assert rows.max() - rows.min() + 1 >= 0.9 * 120 * rec["crop_scale"]
    assert cols.max() - cols.min() + 1 <= 13 * rec["crop_scale"] + 2
    assert out[0, 0] == 220 and out[target // 2, 0] == 220


def test_without_adaptive_crop_the_whole_image_is_shrunk_and_padded(make_rod, params):
    image, inside = make_rod(shape=(100, 80), center=(40, 50), length=30, width=8, bg=220, fg=70)
    with_iam, rec_iam = crop_filter_image(image, params)
    out, rec = crop_filter_image(image, dict(params, adaptive_crop=False))
    target = params["target_size"]
    assert rec_iam["adaptive_crop"] and not rec["adaptive_crop"]
    assert (rec["crop_y0"], rec["crop_y1"], rec["crop_x0"], rec["crop_x1"]) == (0, 100, 0, 80)
    assert rec["crop_scale"] == pytest.approx(target / 100) and rec["pad_top"] == 0
    assert rec["pad_left"] == (target - round(80 * target / 100)) // 2
    assert out.shape == (target, target) and out.dtype == image.dtype
    # The rod keeps its place in the frame, shrunk with it, instead of being centred at full size.
    rows, cols = np.nonzero(out < 150)
    assert abs(rows.mean() - 40 * rec["crop_scale"]) < 2
    assert abs(cols.mean() - (rec["pad_left"] + 50 * rec["crop_scale"])) < 2
    assert (out < 150).sum() < (with_iam < 150).sum()
    # The quality filters hold either way.
    for key, value in (("foreground_px", inside.sum()), ("polarity", "dark_on_light")):
        assert rec[key] == rec_iam[key] == value
    with pytest.raises(ImageRejected, match="flat"):
        crop_filter_image(np.full((100, 80), 220, np.uint8), dict(params, adaptive_crop=False))


def test_object_exactly_target_size_not_scaled(make_rod, params):
    params = dict(params, margin=0)
    image, inside = make_rod(shape=(100, 100), center=(50.5, 50), length=64, width=10)
    y0, y1, _, _ = _bbox(inside)
    assert y1 - y0 == 64
    out, rec = crop_filter_image(image, params)
    assert rec["crop_scale"] == 1.0
    assert rec["pad_top"] == 0


def test_uint16_image(make_rod, crop_params):
    image, inside = make_rod(dtype=np.uint16)
    out, rec = crop_filter_image(image, dict(crop_params, threshold=150 * 257))
    assert out.dtype == np.uint16 and out.shape == (64, 64)
    assert rec["polarity"] == "dark_on_light" and rec["background"] == 220 * 257
    assert rec["foreground_px"] == inside.sum()
    assert out[0, 0] == 220 * 257


def test_fixed_threshold(make_rod, crop_params):
    image, inside = make_rod()
    out, rec = crop_filter_image(image, dict(crop_params, threshold=150))
    assert rec["threshold_level"] == 150
    assert rec["foreground_px"] == inside.sum()
    # a threshold below the object's grey levels finds nothing
    with pytest.raises(ImageRejected, match="min_foreground_px"):
        crop_filter_image(image, dict(crop_params, threshold=50))


def test_fixed_polarity_used(make_rod, params):
    image, inside = make_rod(bg=20, fg=180)
    _, rec = crop_filter_image(image, dict(params, polarity="light_on_dark"))
    assert rec["polarity"] == "light_on_dark" and rec["foreground_px"] == inside.sum()


@pytest.mark.parametrize("value", [0, 128, 255])
def test_flat_image_rejected(crop_params, value):
    with pytest.raises(ImageRejected, match="no foreground"):
        crop_filter_image(np.full((50, 50), value, np.uint8), crop_params)


def test_low_contrast_rejected(make_rod, crop_params):
    image, _ = make_rod(bg=130, fg=126, bands=False)
    with pytest.raises(ImageRejected, match="no foreground"):
        crop_filter_image(image, crop_params)


def test_flat_uint16_rejected(crop_params):
    image = np.full((40, 40), 30000, np.uint16)
    image[10:20, 10:20] = 30100  # < 1 grey level on the 8-bit scale
    with pytest.raises(ImageRejected, match="no foreground"):
        crop_filter_image(image, crop_params)


def test_tiny_speck_rejected(crop_params):
    image = np.full((60, 60), 20, np.uint8)
    image[30:33, 30:33] = 200
    with pytest.raises(ImageRejected, match="min_foreground_px") as info:
        crop_filter_image(image, crop_params)
    assert "9 px" in str(info.value)
    # the same speck passes when the limit allows it
    _, rec = crop_filter_image(image, dict(crop_params, min_foreground_px=9, min_detail=0))
    assert rec["foreground_px"] == 9


def test_blurred_object_rejected_by_min_detail(make_rod, crop_params):
    sharp, _ = make_rod()
    blurred, _ = make_rod(bands=False, blur=4.0)
    params = dict(crop_params, min_detail=6.0)
    _, rec = crop_filter_image(sharp, params)
    assert rec["detail_score"] >= 6.0
    with pytest.raises(ImageRejected, match="min_detail") as info:
        crop_filter_image(blurred, params)
    assert "detail score" in str(info.value)
    # with the filter off the blurred one is kept
    _, rec = crop_filter_image(blurred, dict(crop_params, min_detail=0.0))
    assert rec["detail_score"] < 6.0


def test_debris_does_not_widen_box(make_rod, params):
    clean, inside = make_rod(shape=(100, 100), center=(55, 60), length=40, width=10)
    dirty = clean.copy()
    dirty[5:7, 5:7] = 40  # 4 px of debris, < 0.1 x the rod's 451 px
    _, rec_clean = crop_filter_image(clean, params)
    _, rec_dirty = crop_filter_image(dirty, params)
    box = lambda r: (r["crop_y0"], r["crop_y1"], r["crop_x0"], r["crop_x1"])  # noqa: E731
    assert box(rec_dirty) == box(rec_clean)
    assert rec_dirty["foreground_px"] == inside.sum()
    # with the debris filter off, the speck is part of the object and the box grows to it
    _, rec_all = crop_filter_image(dirty, dict(params, min_component_fraction=0.0))
    assert rec_all["crop_y0"] <= 5 and rec_all["crop_x0"] <= 5


def test_foreground_mask_keeps_large_components(make_rod):
    image, inside = make_rod(shape=(100, 100), center=(50, 30), length=40, width=10)
    second, inside2 = make_rod(shape=(100, 100), center=(50, 75), length=30, width=8)
    both = np.minimum(image, second)
    both[5:7, 5:7] = 40  # debris
    mask, level = foreground_mask(both, "dark_on_light", 150, 0.1)
    np.testing.assert_array_equal(mask, inside | inside2)
    assert level == 150
    mask, _ = foreground_mask(both, "dark_on_light", 150, 0.0)
    assert mask[5:7, 5:7].all()
    mask, level = foreground_mask(255 - both, "light_on_dark", "otsu", 0.1)
    np.testing.assert_array_equal(mask, inside | inside2)
    assert 35 <= level < 155


def test_foreground_mask_nothing_found():
    mask, _ = foreground_mask(np.full((10, 10), 50, np.uint8), "light_on_dark", 100, 0.1)
    assert mask.shape == (10, 10) and not mask.any()


# ---------------------------------------------------------------------- Otsu on both polarities


@pytest.mark.parametrize("bands", [True, False], ids=["banded", "uniform"])
def test_otsu_light_on_dark_finds_whole_object(make_rod, crop_params, bands):
    image, inside = make_rod(bg=35, fg=155, bands=bands)
    out, rec = crop_filter_image(image, crop_params)
    assert rec["polarity"] == "light_on_dark"
    assert rec["foreground_px"] == inside.sum()


@pytest.mark.parametrize("bands", [True, False], ids=["banded", "uniform"])
def test_otsu_dark_on_light_finds_whole_object(make_rod, crop_params, bands):
    image, inside = make_rod(bg=220, fg=70, bands=bands)
    out, rec = crop_filter_image(image, crop_params)
    assert rec["polarity"] == "dark_on_light"
    assert rec["foreground_px"] == inside.sum()
    y0, y1, x0, x1 = _bbox(inside)
    m = crop_params["margin"]
    assert (rec["crop_y0"], rec["crop_y1"], rec["crop_x0"], rec["crop_x1"]) == (y0 - m, y1 + m, x0 - m, x1 + m)


def test_otsu_polarity_symmetric(make_rod, crop_params):
    """An image and its negative hold the same chromosome: same mask, same box."""
    image, _ = make_rod(bg=220, fg=70)
    _, rec = crop_filter_image(image, crop_params)
    _, rec_neg = crop_filter_image(255 - image, crop_params)
    assert rec["polarity"] != rec_neg["polarity"]
    for key in ("foreground_px", "crop_y0", "crop_y1", "crop_x0", "crop_x1"):
        assert rec[key] == rec_neg[key], key


def test_otsu_tiny_dark_speck_counted(crop_params):
    image = np.full((60, 60), 220, np.uint8)
    image[30:33, 30:33] = 40
    with pytest.raises(ImageRejected, match="9 px"):
        crop_filter_image(image, crop_params)


def test_detail_score():
    flat = np.full((20, 20), 100, np.uint8)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    assert detail_score(flat, mask, 1.0) == 0.0
    stripes = np.tile(np.array([0, 100], np.uint8), (20, 10))
    assert detail_score(stripes, mask, 0.0) == pytest.approx(50.0, rel=0.15)
    assert detail_score(stripes, np.zeros_like(mask), 0.0) == 0.0


def test_object_touching_border(make_rod, params):
    image, inside = make_rod(shape=(80, 80), center=(10, 40), length=40, width=10)
    out, rec = crop_filter_image(image, params)
    assert rec["crop_y0"] == 0
    assert out.shape == (64, 64)


def _shard(make_rod):
    good, _ = make_rod()
    light, _ = make_rod(bg=15, fg=200)
    flat = np.full((30, 30), 90, np.uint8)
    meta = pd.DataFrame({
        "image_id": ["d/g/a", "d/g/b", "d/g/c"],
        "dataset": "d", "group": "g",
        "label": pd.array([0, 5, 23], dtype="Int8"),
        "class_name": ["1", "6", "Y"],
        "source": ["a.png", "b.png", "c.png"],
    })
    return meta, [good, flat, light]


def test_crop_filter_images(make_rod, crop_params):
    meta, images = _shard(make_rod)
    kept_meta, kept, rejected = crop_filter_images(meta, images, crop_params)
    assert list(kept_meta["image_id"]) == ["d/g/a", "d/g/c"]
    assert [im.shape for im in kept] == [(64, 64), (64, 64)]
    assert list(kept_meta["polarity"]) == ["dark_on_light", "light_on_dark"]
    assert list(kept_meta["orig_height"]) == [100, 100] and list(kept_meta["orig_width"]) == [80, 80]
    assert list(kept_meta["label"]) == [0, 23] and str(kept_meta["label"].dtype) == "Int8"
    assert list(kept_meta["class_name"]) == ["1", "Y"]
    assert rejected.to_dict("records") == [
        {"image_id": "d/g/b", "source": "b.png", "stage": "crop_filter",
         "reason": rejected.loc[0, "reason"]}]
    assert "no foreground" in rejected.loc[0, "reason"]


def test_run_writes_shard_and_rejected(make_rod, crop_params, tmp_path):
    meta, images = _shard(make_rod)
    shards.write_shard(tmp_path / "in.parquet", meta, images)
    run(tmp_path / "in.parquet", crop_params, tmp_path / "out" / "000.parquet", tmp_path / "rej" / "000.parquet")
    out_meta, out = shards.read_shard(tmp_path / "out" / "000.parquet")
    assert list(out_meta["image_id"]) == ["d/g/a", "d/g/c"]
    assert all(im.shape == (64, 64) for im in out)
    rejected = shards.read_table(tmp_path / "rej" / "000.parquet")
    assert list(rejected["image_id"]) == ["d/g/b"]


def test_run_with_all_rejected(crop_params, tmp_path):
    meta = pd.DataFrame({"image_id": ["x"], "source": ["x.png"], "label": pd.array([1], dtype="Int8")})
    shards.write_shard(tmp_path / "in.parquet", meta, [np.zeros((20, 20), np.uint8)])
    run(tmp_path / "in.parquet", crop_params, tmp_path / "out.parquet", tmp_path / "rej.parquet")
    out_meta, out = shards.read_shard(tmp_path / "out.parquet")
    assert out == [] and len(out_meta) == 0
    assert len(shards.read_table(tmp_path / "rej.parquet")) == 1
