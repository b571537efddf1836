"""End to end: a tiny magnification series through ingest, register, the paired profile, SR
training, inference and metrics (config/metaphase.yaml in small), with bad input mixed in."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from karyosr import registration, shards, spreads
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
    "sr": {"profiles": ["real_x4"],
           "models": [{"name": "srresnet", "arch": "srresnet",
                       "options": {"num_blocks": 2, "num_features": 16, "bicubic_residual": True},
                       "epochs": 2, "steps_per_epoch": 15, "patch_size": 32, "lr": 0.001}]},
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
    config = {**TINY_METAPHASE, "dataset": {**TINY_METAPHASE["dataset"], "source": {"type": "path", "path": str(raw)}}}
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
    assert methods == {"bicubic", "srresnet"}
    assert summary["psnr_mean"].notna().all() and (summary["psnr_mean"] > 15).all()
    assert len(shards.read_table(work / "results/sr/srresnet/real_x4/manifest.parquet")) > 0
