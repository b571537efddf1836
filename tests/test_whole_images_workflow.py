"""End to end: a tiny folder of whole images (generated metaphase photographs in two slide folders,
a 16-bit TIFF, a flat image and an unreadable file mixed in) through ingest by folder, the split
by slide, tiles with the detail filter, a x4 and a scale-1 restoration profile, SR training and
inference, metrics with a reference, the held-out originals enhanced whole with NIQE/PIQE before
and after, and the report (config/photos.yaml in small)."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from karyosr.dataset import photos
from karyosr.sr.archs import RRDBNet
from karyosr.io import shards
from workflow_helpers import snakemake, write_config

TINY_PHOTOS = {
    "seed": 0,
    "shards": 2,
    "dataset": {"name": "tinyphotos", "source": {"type": "path"}, "layout": {"type": "images", "group": "folder"}},
    "tiles": {"size": 32, "min_detail": 1.0, "bit_depth": 8, "max_per_image": 12},
    "split": {"fractions": {"train": 0.7, "val": 0.15, "test": 0.15}},
    "degrade": {"profiles": [
        {"name": "x4_bicubic", "scale": 4, "kernel": "bicubic"},
        {"name": "restore", "scale": 1, "blur_sigma": [0.8, 1.2], "noise": "gaussian", "noise_sigma": [2, 4],
         "contrast_loss": [0.1, 0.2], "jpeg_quality": [80, 90]},
    ]},
    "upscale": {"methods": ["nearest", "bicubic"]},
    "sr": {"profiles": ["x4_bicubic", "restore"],
           "models": [{"name": "msrresnet", "arch": "srresnet",
                       "options": {"num_block": 1, "num_feat": 8, "bicubic_residual": True, "batch_norm": False,
                                   "input_shift": "auto"},
                       "epochs": 1, "steps_per_epoch": 6, "batch_size": 8, "patch_size": 32, "lr": 0.001},
                      # the metaphase work's transfer learning: GAN fine-tuning of a published-format
                      # x4 RRDBNet (3-channel, BasicSR keys), whose trunk also seeds the x1 network
                      {"name": "esrgan_transfer", "arch": "rrdbnet", "init_from": "PRETRAINED",
                       "options": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4},
                       "pixel_weight": 0.01, "perceptual_weight": 0.0, "gan": {"type": "ragan", "weight": 0.005},
                       "epochs": 1, "steps_per_epoch": 4, "batch_size": 8, "patch_size": 32, "lr": 0.0001}]},
    "metrics": {"niqe_patch_size": 16},
    "whole": {"max_pixels": 120_000},
    "classify": {"experiments": [], "bootstrap": 200},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("photos")
    raw = work / "raw"
    photos.generate_photos(raw, {"n_slides": 2, "photos_per_slide": 2, "size": [128, 160]}, seed=3)
    colour = cv2.imread(str(raw / "s000/s000_000.jpg"), cv2.IMREAD_COLOR)
    grey16 = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    cv2.imwrite(str(raw / "s000/s000_deep.tif"), grey16)
    cv2.imwrite(str(raw / "s001/s001_flat.png"), np.full((128, 160), 170, np.uint8))
    (raw / "s001/s001_broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    torch.manual_seed(0)
    pretrained = RRDBNet(4, num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, num_grow_ch=4)
    torch.save({"params_ema": pretrained.state_dict()}, work / "RRDB_tiny_x4.pth")
    config = {**TINY_PHOTOS, "dataset": {**TINY_PHOTOS["dataset"], "source": {"type": "path", "path": str(raw)}}}
    config["sr"] = {**config["sr"], "models": [{**m, "init_from": str(work / "RRDB_tiny_x4.pth")}
                                               if m.get("init_from") else m for m in config["sr"]["models"]]}
    write_config(work, config)
    snakemake(work, "--configfile", str(work / "config.yaml"))
    return work


def test_ingest_keeps_colour_and_16_bit_and_quarantines_the_unreadable(run):
    ingested = shards.read_table(run / "results/ingest/manifest.parquet").set_index("source")
    assert set(ingested["group"]) == {"s000", "s001"}
    assert ingested.loc["s000/s000_000.jpg", "converted_from"] != ""
    assert ingested.loc["s000/s000_deep.tif", "dtype"] == "uint16"
    rejected = shards.read_table(run / "results/ingest/rejected.parquet")
    assert list(rejected["source"]) == ["s001/s001_broken.jpg"]


def test_split_by_folder_with_validation_tiles_of_training_images(run):
    split = shards.read_table(run / "results/split/manifest.parquet")
    per_group = split.groupby("group")["split"].unique()
    assert sorted(s for splits in per_group for s in splits) == ["test", "train"]
    tiles = shards.read_table(run / "results/tiles/manifest.parquet")
    assert set(tiles["split"]) == {"train", "val", "test"}
    test_group = next(g for g, s in per_group.items() if s[0] == "test")
    assert set(tiles.loc[tiles["group"] == test_group, "split"]) == {"test"}
    assert (tiles["height"] == 32).all() and (tiles["dtype"] == "uint8").all()


def test_flat_image_gives_no_tile_and_says_so(run):
    counts = shards.read_table(run / "results/tiles/images.parquet").set_index("source")
    flat = counts.loc["s001/s001_flat.png"]
    assert flat["kept"] == 0 and flat["flat"] == flat["tiles"] > 0
    reasons = shards.read_table(run / "results/tiles/rejected.parquet").set_index("source")["reason"]
    assert "no tile with detail" in reasons["s001/s001_flat.png"]
    assert counts["kept"].sum() > 0


def test_both_profiles_trained_and_scored_with_a_reference(run):
    summary = shards.read_table(run / "results/metrics/summary.parquet")
    assert set(zip(summary["profile"], summary["method"])) == {
        ("x4_bicubic", "nearest"), ("x4_bicubic", "bicubic"), ("x4_bicubic", "msrresnet"),
        ("x4_bicubic", "esrgan_transfer"), ("restore", "bicubic"), ("restore", "msrresnet"),
        ("restore", "esrgan_transfer")}
    assert summary["psnr_fg_mean"].notna().all()
    restored = shards.read_table(run / "results/degrade/restore/manifest.parquet")
    assert (restored["height"] == 32).all() and (restored["scale"] == 1).all()
    assert restored["contrast_loss"].between(0.1, 0.2).all()


def test_held_out_originals_enhanced_whole_and_scored_before_and_after(run):
    x4 = shards.read_table(run / "results/whole/x4_bicubic/quality.parquet")
    split = shards.read_table(run / "results/split/manifest.parquet")
    held_out = set(split.loc[split["split"] == "test", "image_id"]) - {"tinyphotos/s001/s001_flat"}
    assert held_out <= set(x4["image_id"])
    # 128 x 160 at x4 exceeds whole.max_pixels: the central crop that fits is enhanced and scored
    capture = x4[x4["method"] == "capture"].set_index("image_id")
    enlarged = x4[x4["method"] == "msrresnet"].set_index("image_id")
    assert (enlarged["height"] == 4 * capture["height"]).all()
    assert (capture["height"] * capture["width"] * 16 <= 120_000).all()
    restore = shards.read_table(run / "results/whole/restore/quality.parquet")
    assert set(restore["method"]) == {"capture", "bicubic", "msrresnet", "esrgan_transfer"}
    assert restore[["niqe", "piqe"]].loc[restore["method"] == "capture"].notna().all().all()
    # a method's output NIQE cannot score (a barely trained GAN's flat image) keeps the reason
    assert (restore["niqe"].notna() | (restore["niqe_error"] != "")).all() and restore["piqe"].notna().all()


def test_transfer_learning_from_a_published_x4_file_on_both_profiles(run):
    for profile in ("x4_bicubic", "restore"):
        log = (run / f"results/logs/train_sr/esrgan_transfer/{profile}.log").read_text()
        assert "initialised esrgan_transfer from" in log
        assert "train_adversarial" in pd.read_parquet(run / f"results/models/esrgan_transfer/{profile}/history.parquet").columns


def test_report_shows_the_before_after_table_box_plots_and_caveat(run):
    report = run / "results/report"
    summary = (report / "summary.md").read_text()
    assert "Whole images before and after enhancement, restore" in summary
    assert "reward some artefacts" in summary
    assert "Tiles of the whole images" in summary and "dropped as flat background" in summary
    for profile in ("x4_bicubic", "restore"):
        assert (report / f"whole_quality_{profile}.png").stat().st_size > 0
        table = pd.read_csv(report / f"tables/whole_quality_{profile}.csv")
        assert table["method"].iloc[0] == "capture"
    gains = pd.read_csv(report / "tables/sr_gains.csv")
    assert {"bicubic"} <= set(gains["versus"]) and "psnr_fg_gain" in gains
