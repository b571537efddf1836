"""Whole-image layouts (images, magnification_series) and karyosr.dataset.pairs: registration of every
pair of a slide, rejected pairs kept with the reason, registered pairs cut into paired tiles."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from karyosr.config import ConfigError, validate
from karyosr.dataset import ingest, pairs, registration, spreads
from karyosr.dataset.ingest import LayoutError, ingest_shard, list_candidates
from karyosr.io import shards

EXTENSIONS = [".tif", ".png", ".jpg"]
SERIES = {"type": "magnification_series", "subdir": "", "extensions": EXTENSIONS, "group_regex": "_(?P<group>[^_]+)$"}
IMAGES = {"type": "images", "subdir": "", "extensions": EXTENSIONS, "group_regex": "^(?P<group>[^_]+)_"}
SMALL = {"n_slides": 2, "view_px": 256, "low_px": 256, "ratios": [4, 2], "chr1_length_px": 40, "width_px": 5}


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def _ingest_all(root, candidates, n_shards=3):
    metas, images, rejected = [], [], []
    for shard in range(n_shards):
        meta, imgs, rej = ingest_shard(root, candidates, shard, n_shards, 10**8)
        metas.append(meta)
        images += imgs
        rejected.append(rej)
    return pd.concat(metas, ignore_index=True), images, pd.concat(rejected, ignore_index=True)


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("text, value", [("10x", 10.0), ("40X", 40.0), ("2.5x", 2.5), (" 4x ", 4.0)])
def test_parse_magnification(text, value):
    assert ingest.parse_magnification(text) == value


@pytest.mark.parametrize("text", ["zoom", "x10", "10", "0x", "-4x", ""])
def test_unreadable_magnification_label_names_it(text):
    with pytest.raises(LayoutError, match="magnification label"):
        ingest.parse_magnification(text)


def test_magnification_series_folders_native_size_grey_and_quarantine(tmp_path):
    rng = np.random.default_rng(0)
    _write(tmp_path / "s1" / "10x" / "a.png", rng.integers(0, 255, (40, 60), dtype=np.uint8))
    _write(tmp_path / "s1" / "40x" / "a.png", rng.integers(0, 255, (50, 30, 3), dtype=np.uint8))  # colour
    _write(tmp_path / "s2" / "40x" / "b.png", rng.integers(0, 255, (20, 20), dtype=np.uint8))  # one magnification
    _write(tmp_path / "s3" / "zoom" / "c.png", rng.integers(0, 255, (20, 20), dtype=np.uint8))  # bad label
    _write(tmp_path / "s3" / "4x" / "c.png", rng.integers(0, 255, (20, 20), dtype=np.uint8))
    _write(tmp_path / "loose.png", rng.integers(0, 255, (20, 20), dtype=np.uint8))  # wrong depth
    candidates = list_candidates(tmp_path, "ms", SERIES)
    errors = dict(zip(candidates["source"], candidates["error"]))
    assert pd.isna(errors["s1/10x/a.png"]) and pd.isna(errors["s1/40x/a.png"])
    assert "one magnification only (40x)" in errors["s2/40x/b.png"]
    assert "magnification label 'zoom'" in errors["s3/zoom/c.png"]
    assert "one magnification only (4x)" in errors["s3/4x/c.png"]
    assert "<slide>/<magnification>/<file>" in errors["loose.png"]

    meta, images, rejected = _ingest_all(tmp_path, candidates)
    assert sorted(meta["image_id"]) == ["ms/s1/10x/a", "ms/s1/40x/a"]  # same stem, both kept
    by_id = dict(zip(meta["image_id"], images))
    assert by_id["ms/s1/10x/a"].shape == (40, 60) and by_id["ms/s1/40x/a"].shape == (50, 30)  # native size
    row = meta.set_index("image_id").loc["ms/s1/40x/a"]
    assert row["magnification"] == 40.0 and row["magnification_label"] == "40x" and row["slide"] == "s1"
    assert row["converted_from"] != "gray" and pd.isna(row["label"]) and row["group"] == "s1"
    assert len(rejected) == 4 and rejected["reason"].str.len().gt(0).all()
    # every capture of a slide is in one shard: the register stage reads one shard per job
    candidates["shard"] = [shards.shard_of(k, 3) for k in ingest.shard_keys(candidates)]
    assert candidates.groupby("slide")["shard"].nunique().max() == 1


def test_magnification_series_csv(tmp_path):
    rng = np.random.default_rng(1)
    _write(tmp_path / "img" / "low.png", rng.integers(0, 255, (30, 30), dtype=np.uint8))
    _write(tmp_path / "img" / "high.png", rng.integers(0, 255, (30, 30), dtype=np.uint8))
    (tmp_path / "series.csv").write_text("slide,magnification,path\nA,10x,img/low.png\nA,40x,img/high.png\n")
    candidates = list_candidates(tmp_path, "ms", {**SERIES, "table": "series.csv"})
    assert candidates["error"].isna().all()
    assert sorted(candidates["magnification"]) == [10.0, 40.0]
    (tmp_path / "bad.csv").write_text("slide,path\nA,img/low.png\n")
    with pytest.raises(LayoutError, match="missing column.*magnification"):
        list_candidates(tmp_path, "ms", {**SERIES, "table": "bad.csv"})


def test_images_layout_group_regex_and_max_pixels(tmp_path):
    rng = np.random.default_rng(2)
    _write(tmp_path / "p1_a.png", rng.integers(0, 255, (70, 90), dtype=np.uint8))
    _write(tmp_path / "sub" / "p2_b.png", rng.integers(0, 255, (200, 300), dtype=np.uint8))
    _write(tmp_path / "nogroup.png", rng.integers(0, 255, (10, 10), dtype=np.uint8))
    candidates = list_candidates(tmp_path, "wi", IMAGES)
    errors = dict(zip(candidates["source"], candidates["error"]))
    assert "does not match dataset.layout.group_regex" in errors["nogroup.png"]
    metas, images, rejected = [], [], []
    for shard in range(2):
        meta, imgs, rej = ingest_shard(tmp_path, candidates, shard, 2, 10_000)
        metas.append(meta), images.extend(imgs), rejected.append(rej)
    meta, rejected = pd.concat(metas), pd.concat(rejected)
    assert list(meta["image_id"]) == ["wi/p1/p1_a"] and images[0].shape == (70, 90)
    assert meta["label"].isna().all() and meta["class_name"].isna().all()
    big = rejected.set_index("source").loc["sub/p2_b.png", "reason"]
    assert "60000" in big or "pixels" in big  # ingest.max_pixels still guards


def _config(**overrides) -> dict:
    config = {"dataset": {"source": {"type": "metaphase"}, "layout": {"type": "magnification_series"}},
              "degrade": {"profiles": [{"name": "real_x4", "scale": 4, "paired": True}]},
              "classify": {"experiments": []}, "sr": {"profiles": ["real_x4"], "models": []}}
    config.update(overrides)
    return config


def test_config_paired_profile_and_whole_image_rules():
    config = validate(_config())
    assert config["degrade"]["profiles"][0]["tile"] == 32 and config["register"]["method"] == "ncc"
    assert config["spreads"] == {}
    bad = _config(dataset={"layout": {"type": "bioimlab"}})
    with pytest.raises(ConfigError, match=r"degrade.profiles.0.paired.*magnification_series"):
        validate(bad)
    mixed = _config(degrade={"profiles": [{"name": "real_x4", "scale": 4, "paired": True},
                                          {"name": "x4_bicubic", "scale": 4}]})
    with pytest.raises(ConfigError, match=r"degrade.profiles.1.*synthetic degradation"):
        validate(mixed)
    with pytest.raises(ConfigError, match="classify.experiments"):
        validate(_config(classify={"experiments": [{"name": "a", "input": "hr", "backbone": "dcnn"}]}))
    with pytest.raises(ConfigError, match="register.method"):
        validate(_config(register={"method": "phase"}))


# --------------------------------------------------------------------------- registration and pairs


@pytest.fixture(scope="module")
def series_shard():
    """Ingest-shard-like rows and images of two synthetic slides, plus a foreign view in s000."""
    rows, images, truth = [], [], []
    for index in range(2):
        series = spreads.magnification_series(SMALL, 3, index)
        captures = {"40x": series.view, **series.low}
        for label, image in captures.items():
            rows.append({"image_id": f"t/{series.slide}/{label}/{series.slide}_{label}", "dataset": "t",
                         "group": series.slide, "slide": series.slide, "source": f"{series.slide}/{label}/x.png",
                         "magnification": float(label[:-1]), "magnification_label": label})
            images.append(image)
        truth.append(series.truth)
    # a high-magnification view of another slide filed under s000: it overlaps nothing there
    rows.append({**rows[3], "image_id": "t/s000/40x/foreign", "group": "s000", "slide": "s000",
                 "source": "s000/40x/foreign.png"})
    images.append(images[3])
    return pd.DataFrame(rows), images, pd.concat(truth, ignore_index=True)


def test_slide_pairs_every_low_high_combination():
    meta = pd.DataFrame({"image_id": ["a", "b", "c", "d"], "magnification": [40.0, 10.0, 20.0, 40.0]})
    assert pairs.slide_pairs(meta) == [(1, 2), (1, 0), (1, 3), (2, 0), (2, 3)]


def test_register_slides_accuracy_and_rejected_reason(series_shard):
    meta, images, truth = series_shard
    table = pairs.register_slides(meta, images, {"method": "ncc", "min_score": 0.6})
    assert list(table.columns) == pairs.PAIR_COLUMNS
    # s000: 10x-20x, 10x-40x, 10x-foreign, 20x-40x, 20x-foreign; s001: three pairs
    assert len(table) == 8
    foreign = table[table["high_id"] == "t/s000/40x/foreign"]
    assert len(foreign) == 2 and not foreign["accepted"].any()
    assert foreign["reason"].str.contains("below min_score").all()
    # two low magnifications may be rotated by twice the range and overlap in part: registered,
    # accepted or rejected with the reason, never silently
    lows = table[table["high_magnification"] == "20x"]
    assert (lows["accepted"] == (lows["reason"] == "")).all()
    good = table[(table["high_magnification"] == "40x") & (table["high_id"] != "t/s000/40x/foreign")]
    assert len(good) == 4 and good["accepted"].all() and (good["reason"] == "").all()
    errors = []
    for t in truth.itertuples():
        row = good[(good["slide"] == t.slide) & (good["low_magnification"] == t.magnification)
                   & (good["high_magnification"] == "40x")].iloc[0]
        estimate = registration.Transform(row.cx, row.cy, row.scale, row.rotation_deg)
        errors.append(registration.corner_error(estimate, registration.Transform(t.cx, t.cy, t.scale, t.rotation_deg),
                                                (t.view_h, t.view_w)))
    assert np.median(errors) < 0.5 and max(errors) < 2.0, errors


def test_register_pair_failure_is_a_rejected_row():
    low = np.zeros((40, 40), np.uint8)
    row = pairs.register_pair(low, np.zeros((400, 400), np.uint8), 4.0, {"method": "ncc"})
    assert not row["accepted"] and "no overlap" in row["reason"]


def test_cut_tiles_follow_the_degrade_contract(series_shard):
    meta, images, _ = series_shard
    table = pairs.register_slides(meta, images, {"method": "ncc"})
    profile = {"scale": 4, "tile": 16, "margin": 1.0}
    lr_meta, lr, hr_meta, hr = pairs.cut_tiles(meta, images, table, {"s000": "train", "s001": "test"}, "real_x4",
                                               profile)
    assert len(lr) == len(hr) == len(lr_meta) == len(hr_meta) > 0
    assert {im.shape for im in lr} == {(16, 16)} and {im.shape for im in hr} == {(64, 64)}
    assert set(lr_meta["pair_id"]) == {"t/s000/40x/s000_40x@10x/s000_10x", "t/s001/40x/s001_40x@10x/s001_10x"}
    assert (lr_meta["scale"] == 4).all() and (lr_meta["profile"] == "real_x4").all()
    assert dict(zip(lr_meta["group"], lr_meta["split"])) == {"s000": "train", "s001": "test"}
    assert list(lr_meta["image_id"]) == list(hr_meta["image_id"]) and lr_meta["image_id"].is_unique
    # the LR tile is the HR tile seen at low magnification: bicubic-downscaled HR tracks it closely
    from karyosr.resize import imresize
    down = np.stack([imresize(h.astype(np.float32), 0.25) for h in hr])
    lrs = np.stack(lr).astype(np.float32)
    corr = np.corrcoef(down.ravel(), lrs.ravel())[0, 1]
    assert corr > 0.8, corr
    # a ratio no profile asks for gives nothing; a rejected pair is never cut
    none = pairs.cut_tiles(meta, images, table, {"s000": "train", "s001": "test"}, "real_x8", {**profile, "scale": 8})
    assert len(none[1]) == 0
    assert not set(lr_meta["high_id"]) & {"t/s000/40x/foreign"}


def test_tile_grid_centred_whole_tiles():
    assert pairs.tile_grid((40, 33), 16) == [(4, 0), (4, 16), (20, 0), (20, 16)]
    assert pairs.tile_grid((10, 40), 16) == []


def test_pairs_manifest_keeps_rejected(tmp_path, series_shard):
    meta, images, _ = series_shard
    table = pairs.register_slides(meta, images, {"method": "ncc"})
    shards.write_table(tmp_path / "a.parquet", table.iloc[:3])
    shards.write_table(tmp_path / "b.parquet", table.iloc[3:])
    pairs.run_pairs_manifest([tmp_path / "a.parquet", tmp_path / "b.parquet"], tmp_path / "pairs.parquet",
                             tmp_path / "rejected.parquet")
    assert len(shards.read_table(tmp_path / "pairs.parquet")) == len(table)
    rejected = shards.read_table(tmp_path / "rejected.parquet")
    assert len(rejected) == (~table["accepted"]).sum() >= 2 and rejected["reason"].str.len().gt(0).all()


def test_shipped_metaphase_config_validates_alone_and_over_the_default():
    import copy

    import yaml

    root = Path(__file__).resolve().parents[1]
    metaphase = yaml.safe_load((root / "config/metaphase.yaml").read_text())
    default = yaml.safe_load((root / "config/config.yaml").read_text())

    def merged(base: dict, over: dict) -> dict:  # Snakemake's --configfile merge: dicts deep, lists replaced
        out = copy.deepcopy(base)
        for key, value in over.items():
            out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    for config in (metaphase, merged(default, metaphase)):
        validated = validate(copy.deepcopy(config))
        assert validated["dataset"]["source"]["type"] == "metaphase"
        assert [p["name"] for p in validated["degrade"]["profiles"] if p["paired"]] == ["real_x4"]
        spreads.resolve_params(validated["spreads"])  # the generator accepts its slice
