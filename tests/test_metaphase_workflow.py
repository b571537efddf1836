"""End to end: a tiny magnification series through ingest, register, the paired profile, SR
training (ESRGAN transfer learning from a published-format RRDBNet file included), inference,
metrics, whole-capture enhancement in seamless tiles with NIQE/PIQE before and after, and the
report (config/metaphase.yaml in small), with bad input mixed in."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from karyosr.dataset import registration, spreads
from karyosr.io import shards
from karyosr.sr import infer as sr_infer
from karyosr.sr.archs import RRDBNet
from karyosr.whole.quality import CAPTURE
from workflow_helpers import snakemake, write_config

SERIES = {"n_slides": 5, "view_px": 256, "low_px": 256, "ratios": [4, 2], "chr1_length_px": 40, "width_px": 5}

TINY_METAPHASE = {
    "seed": 0,
    "shards": 2,
    "dataset": {"name": "tinymeta", "source": {"type": "path"}, "layout": {"type": "magnification_series"}},
    "split": {"fractions": {"train": 0.6, "val": 0.2, "test": 0.2}},
    "register": {"method": "ncc", "min_score": 0.6},
    "degrade": {"profiles": [{"name": "real_x4", "scale": 4, "paired": True, "tile": 16},
                             {"name": "real_x2", "scale": 2, "paired": True, "tile": 16}]},
    "upscale": {"methods": ["bicubic"]},
    # tiles of 24 LR pixels: the 64 px test captures are enhanced in 3 x 3 seamless tiles
    "sr": {"profiles": ["real_x4"], "tile": 24,
           "models": [{"name": "srresnet", "arch": "srresnet",
                       "options": {"num_block": 2, "num_feat": 16, "bicubic_residual": True},
                       "epochs": 2, "steps_per_epoch": 15, "patch_size": 32, "lr": 0.001},
                      # ESRGAN transfer learning: GAN fine-tuning of a user-supplied RRDBNet (written
                      # by the test in BasicSR's format, 3-channel like the published x4 model)
                      {"name": "esrgan_transfer", "arch": "rrdbnet", "init_from": "PRETRAINED",
                       "options": {"num_feat": 16, "num_block": 1, "num_grow_ch": 8},
                       "pixel_weight": 0.01, "perceptual_weight": 0.0, "gan": {"type": "ragan", "weight": 0.005},
                       "epochs": 1, "steps_per_epoch": 6, "patch_size": 32, "lr": 0.0001, "ema_decay": 0.99}]},
    "classify": {"experiments": []},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("metaphase")
    raw = work / "raw"
    spreads.generate(raw, SERIES, seed=5)
    # bad input: a view of another slide filed under s000 (overlaps nothing there), a slide with
    # one magnification only, an unreadable magnification label
    shutil.copy(raw / "s001/40x/s001_40x.png", raw / "s000/40x/foreign.png")
    (raw / "s901/40x").mkdir(parents=True)
    shutil.copy(raw / "s002/40x/s002_40x.png", raw / "s901/40x/only.png")
    (raw / "s902/zoom").mkdir(parents=True)
    shutil.copy(raw / "s003/10x/s003_10x.png", raw / "s902/zoom/a.png")
    torch.manual_seed(0)
    pretrained = RRDBNet(4, num_in_ch=3, num_out_ch=3, num_feat=16, num_block=1, num_grow_ch=8)
    torch.save({"params_ema": pretrained.state_dict()}, work / "RRDB_tiny_x4.pth")
    config = {**TINY_METAPHASE, "dataset": {**TINY_METAPHASE["dataset"], "source": {"type": "path", "path": str(raw)}}}
    config["sr"] = {**config["sr"], "models": [
        {**m, "init_from": str(work / "RRDB_tiny_x4.pth")} if m.get("init_from") else m for m in config["sr"]["models"]]}
    write_config(work, config)
    snakemake(work, "--configfile", str(work / "config.yaml"))
    return work, pd.read_csv(raw / "registration_truth.csv")


def test_quarantine_names_the_reason(run):
    work, _ = run
    rejected = shards.read_table(work / "results/ingest/rejected.parquet").set_index("source")["reason"]
    assert "one magnification only (40x)" in rejected["s901/40x/only.png"]
    assert "magnification label 'zoom'" in rejected["s902/zoom/a.png"]
    ingested = shards.read_table(work / "results/ingest/manifest.parquet")
    assert len(ingested) == 5 * 3 + 1 and set(ingested["magnification_label"]) == {"10x", "20x", "40x"}


def test_pairs_manifest_accuracy_and_rejected_pair(run):
    work, truth = run
    pairs = shards.read_table(work / "results/register/pairs.parquet")
    assert len(pairs) == 5 * 3 + 2  # every (low, high) pair of every slide, the foreign view's two too
    rejected = shards.read_table(work / "results/register/rejected.parquet")
    foreign = rejected[rejected["high_id"] == "tinymeta/s000/40x/foreign"]
    assert len(foreign) == 2 and foreign["reason"].str.contains("below min_score").all()
    errors = []
    for t in truth.itertuples():
        row = pairs[(pairs["high_id"] == f"tinymeta/{t.slide}/40x/{t.slide}_40x")
                    & (pairs["low_magnification"] == t.magnification)].iloc[0]
        assert row["accepted"], row["reason"]
        estimate = registration.Transform(row.cx, row.cy, row.scale, row.rotation_deg)
        errors.append(registration.corner_error(estimate, registration.Transform(t.cx, t.cy, t.scale, t.rotation_deg),
                                                (t.view_h, t.view_w)))
    assert np.median(errors) < 0.5 and max(errors) < 2.0, errors


def test_paired_profiles_and_sr_model(run):
    work, _ = run
    for name, scale in (("real_x4", 4), ("real_x2", 2)):
        lr = shards.read_table(work / f"results/degrade/{name}/manifest.parquet")
        hr = shards.read_table(work / f"results/paired/{name}/hr/manifest.parquet")
        assert len(lr) == len(hr) > 0 and set(lr["image_id"]) == set(hr["image_id"])
        assert (lr["scale"] == scale).all() and {"train", "val", "test"} <= set(lr["split"])
        assert "foreign" not in " ".join(lr["pair_id"])
        assert (hr["height"] == 16 * scale).all() and (lr["height"] == 16).all()
    history = shards.read_table(work / "results/models/srresnet/real_x4/history.parquet")
    assert len(history) == 2
    assert (work / "results/models/srresnet/real_x4/model.safetensors").stat().st_size > 0
    summary = shards.read_table(work / "results/metrics/summary.parquet")
    methods = set(summary.loc[summary["profile"] == "real_x4", "method"])
    assert methods == {"bicubic", "srresnet", "esrgan_transfer"}
    assert summary["psnr_mean"].notna().all() and (summary["psnr_mean"] > 15).all()
    assert len(shards.read_table(work / "results/sr/srresnet/real_x4/manifest.parquet")) > 0


def test_esrgan_fine_tuned_from_the_supplied_file(run):
    work, _ = run
    history = shards.read_table(work / "results/models/esrgan_transfer/real_x4/history.parquet")
    assert len(history) == 1 and "train_adversarial" in history.columns
    log = (work / "results/logs/train_sr/esrgan_transfer/real_x4.log").read_text()
    assert f"initialised esrgan_transfer from {work / 'RRDB_tiny_x4.pth'}" in log


def test_whole_captures_enhanced_in_seamless_tiles(run):
    """Every test capture that is the low side of an accepted x4 pair is enlarged whole by every
    method; the model's tiled output is the whole-image one within a grey level; NIQE and PIQE are
    measured before (capture) and after."""
    work, _ = run
    split = shards.read_table(work / "results/split/manifest.parquet")
    test_slides = set(split.loc[split["split"] == "test", "group"])
    pairs = shards.read_table(work / "results/register/pairs.parquet")
    expected = set(pairs.loc[pairs["accepted"] & (pairs["nominal_ratio"] == 4) & pairs["slide"].isin(test_slides),
                             "low_id"])
    assert expected
    quality = shards.read_table(work / "results/whole/real_x4/quality.parquet")
    assert set(quality["method"]) == {"capture", "bicubic", "srresnet", "esrgan_transfer"}
    for method, rows in quality.groupby("method"):
        assert set(rows["image_id"]) == expected, method
        assert rows["piqe"].notna().all() and rows["niqe"].notna().all()
    captures = quality[quality["method"] == "capture"].set_index("image_id")
    enlarged = quality[quality["method"] == "srresnet"].set_index("image_id")
    assert (enlarged["height"] == 4 * captures["height"]).all()

    ingested = {}
    for path in sorted((work / "results/ingest/shards").glob("*.parquet")):
        m, ims = shards.read_shard(path)
        ingested.update(zip(m["image_id"], ims))
    model, _ = sr_infer.load_model(work / "results/models/srresnet/real_x4/model.safetensors")
    enhanced = {}
    for path in sorted((work / "results/whole/srresnet/real_x4/shards").glob("*.parquet")):
        m, ims = shards.read_shard(path)
        enhanced.update(zip(m["image_id"], ims))
    assert set(enhanced) == expected
    for image_id, image in enhanced.items():
        capture = ingested[image_id]
        assert max(capture.shape) > 24  # really tiled
        whole = sr_infer.predict_tiled(model, capture[None], 4, 255.0, torch.device("cpu"), 0)[0]
        assert np.abs(whole.astype(int) - image.astype(int)).max() <= 1


def test_report_of_the_whole_image_path(run):
    work, _ = run
    page = (work / "results/report/index.html").read_text()
    for heading in ("Registration of the views across magnifications", "Super-resolution on registered pairs, real_x4",
                    "Whole captures before and after enhancement, real_x4", "Slides, real_x4",
                    "Quarantined and rejected inputs"):
        assert heading in page, heading
    assert page.count("data:image/png;base64") >= 3
    summary = (work / "results/report/summary.md").read_text()
    assert "Registration: " in summary and "pairs of captures accepted" in summary
    assert "held-out whole images" in summary and "after minus before" in summary
    table = shards.read_table(work / "results/report/tables/whole_quality_real_x4.parquet")
    assert table["method"].iloc[0] == CAPTURE and len(table) == 4
    rejected = shards.read_table(work / "results/report/tables/rejected.parquet")
    assert rejected["image_id"].str.contains("foreign").any()
