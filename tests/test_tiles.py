"""Whole images without the workflow: tiles and the detail filter, the split of few groups, the
restoration profile, central crops within whole.max_pixels, gains and quality changes with
intervals over groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from karyosr.dataset import degrade, split, tiles
from karyosr.io import shards
from karyosr.report import findings, tables
from karyosr.whole import enhance

PARAMS = {"size": 32, "detail_sigma": 1.0, "min_detail": 1.0, "small_images": "pad", "max_per_image": 0,
          "bit_depth": "auto"}


def field(h: int, w: int, seed: int = 0, flat_right: bool = False) -> np.ndarray:
    """Dark banded objects on a grey background; the right half flat when asked."""
    rng = np.random.default_rng(seed)
    image = np.full((h, w), 180.0)
    for _ in range(h * w // 800):
        y, x = rng.integers(4, h - 12), rng.integers(4, (w // 2 if flat_right else w) - 12)
        image[y:y + 8, x:x + 4] = 60 + 60 * (np.arange(8)[:, None] % 2)
    return np.clip(image + rng.normal(0, 0.3, image.shape), 0, 255).astype(np.uint8)


def row(image_id="d/g1/a", split_name="train", val=0.0):
    return {"image_id": image_id, "dataset": "d", "group": image_id.split("/")[1], "source": image_id + ".png",
            "split": split_name, "val_tile_fraction": val}


def tile(*args):
    rows, kept, record = tiles.tile_image(*args)
    return pd.DataFrame(rows), kept, record


def test_tiles_drop_flat_background_and_count_it():
    meta, kept, record = tile(row(), field(96, 128, flat_right=True), PARAMS)
    assert record["tiles"] == 12 and record["kept"] + record["flat"] == 12
    assert 0 < record["kept"] < 12 and (meta["tile_x"] < 64).all()
    assert all(t.shape == (32, 32) for t in kept)
    assert set(meta["polarity"]) == {"dark_on_light"}
    assert (meta["object_y1"] > meta["object_y0"]).all()


def test_flat_image_gives_no_tile_and_says_why():
    _, kept, record = tiles.tile_image(row(), np.full((64, 64), 128, np.uint8), PARAMS)
    assert kept == [] and record["kept"] == 0 and "no tile with detail" in record["reason"]


def test_small_image_padded_or_quarantined():
    small = field(20, 40)
    meta, kept, record = tile(row(), small, PARAMS)
    assert record["padded"] and kept[0].shape == (32, 32) and meta["padded"].all()
    _, kept, record = tiles.tile_image(row(), small, {**PARAMS, "small_images": "quarantine"})
    assert kept == [] and "smaller than one 32 px tile" in record["reason"]


def test_validation_tiles_come_from_training_images_only():
    image = field(128, 128)
    train, _, _ = tile(row(val=0.25), image, PARAMS)
    test, _, _ = tile(row(split_name="test", val=0.0), image, PARAMS)
    assert set(train["split"]) == {"train", "val"} and (train["split"] == "val").sum() == round(0.25 * len(train))
    assert set(test["split"]) == {"test"}
    again, _, _ = tile(row(val=0.25), image, PARAMS)
    assert list(again["split"]) == list(train["split"])


def test_bit_depth_conversion_and_mixed_depths_refused():
    deep = field(64, 64).astype(np.uint16) * 257
    _, kept, _ = tiles.tile_image(row(), deep, {**PARAMS, "bit_depth": 8})
    assert kept[0].dtype == np.uint8
    _, kept16, _ = tiles.tile_image(row(), deep, PARAMS)
    assert kept16[0].dtype == np.uint16
    with pytest.raises(ValueError, match="tiles.bit_depth"):
        shards.stack([kept[0], kept16[0]])


def test_max_per_image_keeps_the_most_detailed():
    image = field(128, 128, flat_right=True)
    meta, _, record = tile(row(), image, {**PARAMS, "max_per_image": 2, "min_detail": 0})
    scores = tiles.cut_image(image, PARAMS)[2]
    assert record["kept"] == 2 and sorted(meta["detail_score"]) == sorted(scores)[-2:]


def test_tiles_run_streams_a_shard(tmp_path):
    meta = pd.DataFrame([{**row(f"d/g{i}/a"), "label": pd.NA, "class_name": None} for i in range(2)])
    meta = meta.drop(columns=["split", "val_tile_fraction"])
    shards.write_shard(tmp_path / "in.parquet", meta, [field(64, 96, 1), field(64, 96, 2)])
    shards.write_table(tmp_path / "split.parquet", pd.DataFrame(
        {"image_id": ["d/g0/a", "d/g1/a"], "split": ["train", "test"], "val_tile_fraction": [0.5, 0.0]}))
    tiles.run(tmp_path / "in.parquet", tmp_path / "split.parquet", PARAMS, tmp_path / "tiles.parquet",
              tmp_path / "images.parquet", tmp_path / "rejected.parquet")
    out, images = shards.read_shard(tmp_path / "tiles.parquet")
    assert set(out["split"]) == {"train", "val", "test"} and len(images) == len(out)
    assert shards.read_table(tmp_path / "images.parquet")["kept"].sum() == len(out)


def test_split_of_few_groups_holds_out_a_group_and_validates_on_training_tiles():
    manifest = pd.DataFrame({"image_id": [f"d/s{g}/{i}" for g in range(3) for i in range(4)],
                             "group": [f"s{g}" for g in range(3) for _ in range(4)], "label": pd.NA})
    result, note = split.split_tiled_images(manifest, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)
    per_group = result.groupby("group")["split"].unique().map(tuple)
    assert sorted(per_group) == [("test",), ("train",), ("train",)]
    assert (result.loc[result["split"] == "train", "val_tile_fraction"] > 0).all()
    assert (result.loc[result["split"] == "test", "val_tile_fraction"] == 0).all()
    assert "too few for a validation group" in note
    many = pd.DataFrame({"image_id": [f"d/s{g}/0" for g in range(20)], "group": [f"s{g}" for g in range(20)],
                         "label": pd.NA})
    result, note = split.split_tiled_images(many, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)
    assert set(result["split"]) == {"train", "val", "test"} and (result["val_tile_fraction"] == 0).all()
    with pytest.raises(split.SplitError, match="one group"):
        split.split_tiled_images(manifest.assign(group="s0"), {"train": 0.7, "val": 0.15, "test": 0.15}, 0)


def test_restoration_profile_keeps_the_size_and_loses_contrast():
    hr = field(64, 64)
    profile = {"scale": 1, "kernel": "bicubic", "blur_sigma": 0, "noise": "none", "noise_sigma": 0,
               "contrast_loss": 0.5}
    lr, record = degrade.degrade_image(hr, profile, np.random.default_rng(0))
    assert lr.shape == hr.shape and record["kernel"] == "none" and record["contrast_loss"] == 0.5
    assert abs(lr.astype(float).std() - 0.5 * hr.astype(float).std()) < 1.0


def test_central_crop_box_fits_max_pixels():
    assert enhance.central_crop_box((100, 200), 4, 10**6) == (0, 100, 0, 200)
    y0, y1, x0, x1 = enhance.central_crop_box((1840, 3264), 4, 4_000_000)
    assert (y1 - y0) * (x1 - x0) * 16 <= 4_000_000 and abs((x1 - x0) / (y1 - y0) - 3264 / 1840) < 0.01
    assert y0 + y1 == 1840 or abs((y0 + y1) - 1840) <= 1


def test_gains_and_quality_changes_with_intervals_over_groups():
    rng = np.random.default_rng(0)
    ids = [f"d/s{g}/t{i}" for g in range(4) for i in range(5)]
    groups = pd.Series([i.split("/")[1] for i in ids], index=ids)
    per_image = pd.concat([pd.DataFrame({"image_id": ids, "profile": "x4", "method": m,
                                         "psnr": base + rng.normal(0, 0.1, len(ids)),
                                         "psnr_fg": base - 5 + rng.normal(0, 0.1, len(ids))})
                           for m, base in (("bicubic", 30.0), ("lanczos", 30.5), ("net", 32.0))])
    gains = tables.gain_table(per_image, groups, n_boot=200).set_index(["method", "versus"])
    assert gains.loc[("net", "bicubic"), "psnr_gain"] == pytest.approx(2.0, abs=0.1)
    assert gains.loc[("net", "bicubic"), "psnr_ci_low"] > 1.8 and gains.loc[("net", "lanczos"), "groups"] == 4
    quality = pd.concat([pd.DataFrame({"image_id": ids, "group": groups.to_numpy(), "method": m,
                                       "niqe": base + rng.normal(0, 0.05, len(ids)), "piqe": 40.0})
                         for m, base in (("capture", 6.0), ("net", 5.0))])
    changes = tables.quality_changes(quality, n_boot=200).set_index("method")
    assert changes.loc["net", "niqe_change"] == pytest.approx(-1.0, abs=0.1) and changes.loc["net", "niqe_ci_high"] < 0
    lines = findings.change_findings(changes.reset_index(), "x4")
    assert "net lowers NIQE" in lines[0] and "reward some artefacts" in lines[0]
    one_group = quality[quality["group"] == "s0"]
    lines = findings.change_findings(tables.quality_changes(one_group, n_boot=200), "x4")
    assert "one held-out group: no interval" in lines[0]
