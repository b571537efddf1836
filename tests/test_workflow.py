"""End to end: the whole workflow on a tiny synthetic config, every output checked."""

from __future__ import annotations

import copy
import functools
import hashlib
import http.server
import subprocess
import sys
import tarfile
import threading
import zipfile

import cv2
import numpy as np
import pandas as pd
import pytest

from karyosr import model_file
from karyosr.dataset import synthetic
from karyosr.io import shards
from workflow_helpers import TINY_CONFIG, snakemake, write_config

pytestmark = pytest.mark.slow

CONTRACT_COLUMNS = {"image_id", "dataset", "group", "label", "shard", "row", "height", "width",
                    "source", "source_sha256"}


# Image export on, for one profile and two of its methods (LR and HR come with every profile).
EXPORT = {"images": True, "profiles": ["x4_bicubic"], "methods": ["bicubic", "srresnet"]}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny_run")
    config = write_config(workdir, {**TINY_CONFIG, "export": EXPORT})
    snakemake(workdir, "--configfile", str(config))
    return workdir


def read(run_dir, rel):
    return shards.read_table(run_dir / "results" / rel)


def test_raw_dataset_in_bioimlab_layout(run_dir):
    files = sorted((run_dir / "results/raw/tiny/single_chromosomes").rglob("*.bmp"))
    assert len(files) == 8 * 46


def test_ingest_manifest_meets_the_contract(run_dir):
    manifest = read(run_dir, "ingest/manifest.parquet")
    assert CONTRACT_COLUMNS <= set(manifest.columns)
    assert len(manifest) == 8 * 46
    assert manifest["image_id"].is_unique
    assert manifest["image_id"].str.match(r"^tiny/c\d{4}/c\d{4} \d+[ab]?$").all()
    assert set(manifest["label"]) <= set(range(24)) and {22, 23} <= set(manifest["label"])
    assert read(run_dir, "ingest/rejected.parquet").empty
    # shard and row point back at the image's own row.
    for item in manifest.sample(5, random_state=0).itertuples():
        meta = shards.read_shard_meta(run_dir / "results/ingest" / item.shard)
        assert meta["image_id"].iloc[item.row] == item.image_id
        assert shards.shard_of(item.image_id, 2) == int(item.shard[-11:-8])


def test_crop_filter_output_is_square_target(run_dir):
    manifest = read(run_dir, "crop_filter/manifest.parquet")
    assert len(manifest) + len(read(run_dir, "crop_filter/rejected.parquet")) == 8 * 46
    assert (manifest["height"] == 48).all() and (manifest["width"] == 48).all()
    assert {"crop_y0", "crop_x1", "crop_scale", "detail_score", "polarity"} <= set(manifest.columns)


def test_split_keeps_groups_whole(run_dir):
    split = read(run_dir, "split/manifest.parquet")
    assert (split.groupby("group")["split"].nunique() == 1).all()
    assert set(split["split"]) == {"train", "val", "test"}


def test_degrade_outputs_are_low_resolution_and_paired(run_dir):
    hr_ids = set(read(run_dir, "crop_filter/manifest.parquet")["image_id"])
    for name, scale in [("x4_bicubic", 4), ("x2_noise", 2)]:
        lr = read(run_dir, f"degrade/{name}/manifest.parquet")
        assert set(lr["image_id"]) == hr_ids
        assert (lr["height"] == 48 // scale).all()
        assert (lr["scale"] == scale).all()
    noisy = read(run_dir, "degrade/x2_noise/manifest.parquet")["noise_sigma"]
    assert noisy.between(1, 4).all() and noisy.nunique() > 1


def test_sr_outputs_and_metrics(run_dir):
    split = read(run_dir, "split/manifest.parquet")
    n_test = int((split["split"] == "test").sum())
    for method in ("nearest", "bicubic"):
        for profile in ("x4_bicubic", "x2_noise"):
            sr = read(run_dir, f"sr/{method}/{profile}/manifest.parquet")
            assert len(sr) == n_test and (sr["height"] == 48).all()
    sr = read(run_dir, "sr/srresnet/x4_bicubic/manifest.parquet")
    assert len(sr) == n_test and (sr["height"] == 48).all()
    per_image = read(run_dir, "metrics/per_image.parquet")
    assert len(per_image) == n_test * 5
    assert np.isfinite(per_image[["psnr", "ssim", "mse"]].to_numpy()).all()
    summary = read(run_dir, "metrics/summary.parquet").set_index(["profile", "method"])
    assert summary.loc[("x4_bicubic", "bicubic"), "psnr_mean"] > summary.loc[("x4_bicubic", "nearest"), "psnr_mean"]
    assert (summary["n_images"] == n_test).all()
    # A trained SR model beats the best interpolation on the test split.
    assert summary.loc[("x4_bicubic", "srresnet"), "psnr_mean"] > summary.loc[("x4_bicubic", "bicubic"), "psnr_mean"]


def test_training_history_and_checkpoints(run_dir):
    history = read(run_dir, "models/srresnet/x4_bicubic/history.parquet")
    assert list(history["epoch"]) == [1, 2, 3]
    assert history["best"].sum() == 1
    assert {"train_pixel", "val_psnr", "val_ssim"} <= set(history.columns)
    assert (run_dir / "results/checkpoints/srresnet/x4_bicubic/last.pt").exists()


def test_trained_model_from_the_cli_matches_infer_sr(run_dir, tmp_path):
    """The workflow's model.safetensors describes itself, and `karyosr enhance` on the test
    split's LR images (as PNG files) gives the pixels rule infer_sr wrote."""
    model_path = run_dir / "results/models/srresnet/x4_bicubic/model.safetensors"
    meta = model_file.read_metadata(model_path)
    assert meta["kind"] == "sr" and meta["arch"] == "srresnet" and meta["scale"] == 4
    assert meta["profile"]["name"] == "x4_bicubic" and meta["crop"]["target_size"] == 48
    assert set(meta["validation"]) == {"val_psnr", "val_ssim"}
    classifier = model_file.read_metadata(run_dir / "results/classify/models/super_dcnn/seed0/model.safetensors")
    assert classifier["input"] == "super:srcnn:x4_bicubic" and classifier["input_size"] == [12, 12]
    folder = tmp_path / "lr"
    folder.mkdir()
    expected = {}  # file stem -> infer_sr's output (image ids hold '/' and spaces)
    for name in shards.shard_names(2):
        meta_sr, sr_images = shards.read_shard(run_dir / f"results/sr/srresnet/x4_bicubic/shards/{name}.parquet")
        sr_by_id = dict(zip(meta_sr["image_id"], sr_images))
        meta_lr, lr_images = shards.read_shard(run_dir / f"results/degrade/x4_bicubic/shards/{name}.parquet")
        for image_id, split, image in zip(meta_lr["image_id"], meta_lr["split"], lr_images):
            if split == "test":
                stem = f"{len(expected):04d}"
                (folder / f"{stem}.png").write_bytes(cv2.imencode(".png", image)[1].tobytes())
                expected[stem] = sr_by_id[image_id]
    result = subprocess.run([sys.executable, "-m", "karyosr.cli", "enhance", str(model_path), str(folder),
                             "-o", str(tmp_path / "out"), "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    written = sorted((tmp_path / "out/lr").glob("*.png"))
    assert len(written) == len(list(folder.iterdir())) > 0
    for path in written:
        # enhance names its outputs <input>_<model>_x<scale>, apart from the originals
        assert path.stem.endswith("_srresnet_x4"), path.name
        np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED),
                                      expected[path.stem.removesuffix("_srresnet_x4")], path.name)


def test_export_writes_the_selected_test_images_as_files(run_dir):
    export = run_dir / "results/export"
    assert [p.name for p in export.iterdir()] == ["x4_bicubic"]
    assert sorted(p.name for p in (export / "x4_bicubic").iterdir()) == ["HR", "LR", "bicubic", "srresnet"]
    split = read(run_dir, "split/manifest.parquet")
    test_ids = set(split.loc[split["split"] == "test", "image_id"])
    sources = {"LR": "degrade/x4_bicubic", "bicubic": "sr/bicubic/x4_bicubic", "srresnet": "sr/srresnet/x4_bicubic",
               "HR": "crop_filter"}
    for method, output in sources.items():
        folder = export / "x4_bicubic" / method
        index = pd.read_csv(folder / "images.csv", dtype={"class_name": str})
        assert set(index["image_id"]) == test_ids, method
        assert sorted(p.name for p in folder.glob("*.png")) == sorted(index["file"]), method
        assert set(index["class_name"]) <= {*map(str, range(1, 23)), "X", "Y"} and index["class_name"].notna().all()
        size = 12 if method == "LR" else 48
        images = {}
        for path in (run_dir / "results" / output / "shards").glob("*.parquet"):
            meta, pixels = shards.read_shard(path)
            images.update(zip(meta["image_id"], pixels))
        for row in index.head(3).itertuples():
            written = cv2.imread(str(folder / row.file), cv2.IMREAD_UNCHANGED)
            assert written.shape == (size, size) and row.file == row.image_id.replace("/", "__") + ".png"
            np.testing.assert_array_equal(written, images[row.image_id], f"{method}: {row.file}")


def test_viewer_is_written_and_linked(run_dir):
    report = run_dir / "results/report"
    page = (report / "viewer.html").read_text()
    split = read(run_dir, "split/manifest.parquet")
    n_test = int((split["split"] == "test").sum())
    assert page.count('<script type="application/octet-stream"') == 2 * n_test  # one sprite per profile and image
    assert "srresnet" in page and "x2_noise" in page
    assert '<a href="viewer.html">' in (report / "index.html").read_text()
    assert "viewer:" in (run_dir / "results/logs/report/viewer.log").read_text()


def test_report_is_complete(run_dir):
    report = run_dir / "results/report"
    page = (report / "index.html").read_text()
    # sample grids, NIQE/PIQE box plots, SR training curves, 2 confusion matrices, t-SNE, classifier curves
    assert page.count("data:image/png;base64,") == 2 + 2 + 1 + 3 + 1 + 1
    assert "x4_bicubic" in page and "bicubic" in page and "Images per stage" in page
    markdown = (report / "summary.md").read_text()
    assert "| method | PSNR (dB) | SSIM | PSNR fg (dB) |" in markdown and "**" in markdown
    for section in ("Interpolation vs super-resolution, x4_bicubic", "MSE: filter sharpening vs learned sharpening",
                    "No-reference quality before and after enhancement", "Training curves", "Images per class"):
        assert section in page and section in markdown
    assert "| srresnet |" in markdown and "nan" not in markdown.lower()
    for name in ("sr_methods", "stage_counts", "class_counts", "rejected", "software"):
        assert (report / "tables" / f"{name}.csv").exists()
        assert (report / "tables" / f"{name}.parquet").exists()
    counts = pd.read_csv(report / "tables/class_counts.csv")
    assert counts["total"].sum() == len(read(run_dir, "split/manifest.parquet"))


def test_classification_end_to_end(run_dir):
    split = read(run_dir, "split/manifest.parquet").set_index("image_id")["split"]
    balanced = shards.read_shard_meta(run_dir / "results/classify/balanced/hr/smote.parquet")
    real = balanced[~balanced["synthetic"]]
    assert (split[real["image_id"]] == "train").all()
    assert set(real["image_id"]) == set(split[split == "train"].index)
    for experiment in ("dcnn_hr", "super_dcnn"):
        for seed in (0, 1):
            predictions = read(run_dir, f"classify/predictions/{experiment}/seed{seed}.parquet")
            assert set(predictions["image_id"]) == set(split[split == "test"].index)
            probabilities = np.stack(predictions["probabilities"].to_numpy())
            np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
            assert (predictions["predicted"] == probabilities.argmax(axis=1)).all()
    over_seeds = read(run_dir, "classify/summary/over_seeds.parquet")
    assert list(over_seeds["experiment"]) == ["dcnn_hr", "super_dcnn", "both"] and (over_seeds["seeds"] == 2).all()
    assert over_seeds["accuracy_mean"].between(0, 1).all()
    assert over_seeds.set_index("experiment").loc["both", "backbone"] == "dcnn"
    # the ensemble: both members' probabilities averaged per seed and image, then compared with each
    summary = read(run_dir, "classify/summary/predictions.parquet")
    ensemble = summary[(summary["experiment"] == "both") & (summary["seed"] == 0)].set_index("image_id")
    members = [read(run_dir, f"classify/predictions/{name}/seed0.parquet").set_index("image_id")
               for name in ("dcnn_hr", "super_dcnn")]
    mean = (np.stack(members[0]["probabilities"]) + np.stack(members[1].loc[members[0].index, "probabilities"])) / 2
    assert (ensemble.loc[members[0].index, "predicted"].to_numpy() == mean.argmax(axis=1)).all()
    comparisons = read(run_dir, "classify/summary/comparisons.parquet")
    assert set(comparisons.loc[comparisons["comparison"] == "ensemble", "baseline"]) == {"dcnn_hr", "super_dcnn"}
    per_class = read(run_dir, "classify/summary/per_class.parquet")
    assert len(per_class) == 3 * 24
    page = (run_dir / "results/report/index.html").read_text()
    for section in ("Classification: networks and inputs", "Classification: ablation", "Classification: per class",
                    "Confusion matrix, dcnn_hr", "Confusion matrix, both", "t-SNE"):
        assert section in page


def test_nothing_left_to_do_after_a_run(run_dir):
    result = snakemake(run_dir, "--configfile", str(run_dir / "config.yaml"), "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_two_runs_give_byte_identical_tables(run_dir, tmp_path):
    config = write_config(tmp_path, copy.deepcopy(TINY_CONFIG))
    snakemake(tmp_path, "--configfile", str(config))
    tables = [p.relative_to(run_dir) for p in (run_dir / "results").rglob("*.parquet")]
    assert len(tables) > 40
    # the README's claim covers the trained models too: weights and metadata, byte for byte
    models = [p.relative_to(run_dir) for p in (run_dir / "results").rglob("*.safetensors")]
    assert len(models) >= 3
    different = [str(p) for p in tables + models if (run_dir / p).read_bytes() != (tmp_path / p).read_bytes()]
    assert different == []


def test_snakemake_report_archive(run_dir):
    snakemake(run_dir, "--configfile", str(run_dir / "config.yaml"), "--report", "report.zip")
    with zipfile.ZipFile(run_dir / "report.zip") as archive:
        names = archive.namelist()
    assert any(n.endswith("report.html") for n in names)
    assert sum(n.endswith(".png") for n in names) == 6  # + the t-SNE figure
    assert any(n.endswith("index.html") for n in names)


@pytest.fixture(scope="module")
def dataset_archive(tmp_path_factory):
    """A tiny BioImLab-layout dataset packed as tar.gz inside a top-level folder."""
    folder = tmp_path_factory.mktemp("archive")
    synthetic.generate(folder / "bioimlab" / "data", {"n_cells": 4, "chr1_length_px": 40, "width_px": 6}, seed=3)
    archive = folder / "chromosomes.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "bioimlab" / "data", arcname="data")
    return archive


@pytest.fixture
def http_server(dataset_archive):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(dataset_archive.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _ingest_from(source: dict, tmp_path) -> pd.DataFrame:
    config = copy.deepcopy(TINY_CONFIG)
    config["dataset"] = {"name": "remote", "source": source, "layout": {"type": "bioimlab", "subdir": "data"}}
    path = write_config(tmp_path, config)
    snakemake(tmp_path, "results/ingest/manifest.parquet", "--configfile", str(path))
    return shards.read_table(tmp_path / "results/ingest/manifest.parquet")


def test_url_source_downloads_verifies_and_ingests(http_server, dataset_archive, tmp_path):
    digest = hashlib.sha256(dataset_archive.read_bytes()).hexdigest()
    manifest = _ingest_from({"type": "url", "url": f"{http_server}/{dataset_archive.name}", "sha256": digest}, tmp_path)
    assert len(manifest) == 4 * 46
    assert (tmp_path / "resources/downloads" / dataset_archive.name).exists()


def test_url_source_with_wrong_checksum_stops_with_both_hashes(http_server, dataset_archive, tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["dataset"] = {"name": "remote", "layout": {"type": "bioimlab", "subdir": "data"},
                         "source": {"type": "url", "url": f"{http_server}/{dataset_archive.name}", "sha256": "0" * 64}}
    path = write_config(tmp_path, config)
    result = snakemake(tmp_path, "results/ingest/manifest.parquet", "--configfile", str(path), check=False)
    assert result.returncode != 0
    assert "0" * 64 in result.stderr and hashlib.sha256(dataset_archive.read_bytes()).hexdigest() in result.stderr
    assert not (tmp_path / "results/raw/remote").exists()


def test_path_source_unpacks_a_local_archive(dataset_archive, tmp_path):
    manifest = _ingest_from({"type": "path", "path": str(dataset_archive)}, tmp_path)
    assert len(manifest) == 4 * 46
    assert manifest["image_id"].str.startswith("remote/").all()
