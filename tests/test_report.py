"""Tests for karyosr.report: sample choice, tables, and the HTML/Markdown report."""

from __future__ import annotations

import base64
import re

import cv2
import numpy as np
import pandas as pd
import pytest

from karyosr import report, shards
from karyosr.labels import CLASS_NAMES
from karyosr.split import SPLITS


def _split_manifest(per_class=3, classes=range(24), splits=("train", "val", "test")):
    rows = []
    for label in classes:
        for i in range(per_class):
            for s in splits:
                rows.append({"image_id": f"d/c{i:02d}/{s}_{label:02d}_{i}", "group": f"{s}{i}", "label": label,
                             "split": s})
    frame = pd.DataFrame(rows)
    frame["label"] = frame["label"].astype("Int8")
    return frame


def _labels(split, ids):
    return list(split.set_index("image_id").loc[ids, "label"])


# --------------------------------------------------------------------------- pick_samples


def test_pick_samples_deterministic_and_order_free():
    split = _split_manifest()
    first = report.pick_samples(split, 6)
    assert first == report.pick_samples(split, 6)
    assert first == report.pick_samples(split.sample(frac=1.0, random_state=3), 6)
    assert len(first) == len(set(first)) == 6


def test_pick_samples_only_test_split():
    split = _split_manifest()
    ids = report.pick_samples(split, 10)
    assert set(split.set_index("image_id").loc[ids, "split"]) == {"test"}


@pytest.mark.parametrize("n", [2, 4, 8, 12, 24])
def test_pick_samples_spreads_over_classes(n):
    split = _split_manifest(per_class=3)
    labels = _labels(split, report.pick_samples(split, n))
    assert len(set(labels)) == n  # one per class while classes last
    if n >= 2:
        assert min(labels) == 0 and max(labels) == 23  # from the first class to the last


def test_pick_samples_spreads_over_unbalanced_classes():
    rows = [{"image_id": f"d/g/a{i:02d}", "label": 0, "split": "test"} for i in range(12)]
    rows += [{"image_id": f"d/g/b{label}{i}", "label": label, "split": "test"} for label in (1, 2, 3) for i in range(2)]
    split = pd.DataFrame(rows)
    labels = _labels(split, report.pick_samples(split, 4))
    assert sorted(labels) == [0, 1, 2, 3]


def test_pick_samples_small_and_empty():
    split = _split_manifest(per_class=1, classes=[3, 7])
    ids = report.pick_samples(split, 10)
    assert sorted(ids) == sorted(split.loc[split["split"] == "test", "image_id"])
    assert report.pick_samples(split[split["split"] != "test"], 4) == []


# --------------------------------------------------------------------------- tables


def test_markdown_table():
    table = pd.DataFrame({"method": ["bicubic", "nearest"], "psnr_mean": [30.12345, 28.0], "n_images": [10, 3]})
    text = report.markdown_table(table)
    lines = text.split("\n")
    assert lines[0] == "| method | psnr_mean | n_images |"
    assert lines[1] == "|---|---|---|"
    assert lines[2] == "| bicubic | 30.123 | 10 |"
    assert lines[3] == "| nearest | 28.000 | 3 |"
    assert len(lines) == 4
    assert report.markdown_table(table, digits=1).split("\n")[2] == "| bicubic | 30.1 | 10 |"


def test_markdown_table_empty():
    assert report.markdown_table(pd.DataFrame(columns=["a", "b"])) == "| a | b |\n|---|---|"


def test_html_table():
    html = report.html_table(pd.DataFrame({"x": [1.23456], "name": ["<b>"]}))
    assert "1.235" in html and "&lt;b&gt;" in html and "<table" in html


def test_stage_counts_add_up():
    ingest = pd.DataFrame({"image_id": [f"i{i}" for i in range(10)]})
    quarantined = pd.DataFrame({"image_id": ["q1", "q2"]})
    cropped = pd.DataFrame({"image_id": [f"i{i}" for i in range(7)]})
    rejected = pd.DataFrame({"image_id": ["i7", "i8", "i9"]})
    split = pd.DataFrame({"image_id": [f"i{i}" for i in range(7)], "group": ["a", "a", "b", "c", "d", "d", "e"],
                          "split": ["train", "train", "train", "val", "test", "test", "train"]})
    table = report.stage_counts(ingest, quarantined, cropped, rejected, split).set_index("stage")
    assert table.loc["ingest", "in"] == 12
    for stage in ("ingest", "crop_filter"):
        assert table.loc[stage, "in"] == table.loc[stage, "kept"] + table.loc[stage, "set aside"]
    assert table.loc["crop_filter", "in"] == table.loc["ingest", "kept"]
    split_rows = table.loc[[f"split: {s}" for s in SPLITS]]
    assert split_rows["kept"].sum() == len(split) == table.loc["crop_filter", "kept"]
    assert list(split_rows["kept"]) == [4, 1, 2]
    assert table.loc["split: train", "note"] == "3 groups"


def test_class_counts_add_up():
    split = _split_manifest(per_class=2, classes=[0, 5, 22, 23])
    table = report.class_counts(split)
    assert len(table) == 24
    assert list(table["class"]) == CLASS_NAMES
    assert list(table.columns) == ["class", *SPLITS, "total"]
    assert (table[list(SPLITS)].sum(axis=1) == table["total"]).all()
    assert table["total"].sum() == len(split)
    assert table.loc[22, "total"] == 6 and table.loc[22, "class"] == "X"
    assert table.loc[1, "total"] == 0
    for s in SPLITS:
        assert table[s].sum() == (split["split"] == s).sum()


def test_class_counts_missing_split_column_filled():
    split = _split_manifest(per_class=1, classes=[1], splits=("train",))
    table = report.class_counts(split)
    assert table["val"].sum() == 0 and table["test"].sum() == 0 and table["train"].sum() == 1


def test_method_table_gain_over_bicubic():
    summary = pd.DataFrame({"profile": ["x2", "x2", "x4", "x4"], "method": ["bicubic", "nearest", "bicubic", "lanczos"],
                            "psnr_mean": [30.0, 27.5, 25.0, 25.5]})
    summary["ssim_mean"] = [0.8, 0.6, 0.5, 0.55]
    table = report.method_table(summary, ["nearest", "bicubic", "lanczos"])
    assert list(table["method"]) == ["nearest", "bicubic", "bicubic", "lanczos"]
    assert list(table["psnr_gain_pct"]) == pytest.approx([-100 * 2.5 / 30, 0.0, 0.0, 100 * 0.5 / 25])
    assert list(table["ssim_gain_pct"]) == pytest.approx([-25.0, 0.0, 0.0, 10.0])


def test_comparison_marks_the_best_value_per_column():
    summary = pd.DataFrame({"profile": "x4", "method": ["bicubic", "srresnet"], "psnr_mean": [30.0, 31.0],
                            "psnr_std": [1.0, 1.5], "mse_mean": [20.0, 10.0], "mse_std": [2.0, 1.0],
                            "ssim_mean": [0.9, 0.8], "ssim_std": [0.01, 0.02]})
    marked = report.comparison(report.method_table(summary, ["bicubic", "srresnet"]), "x4")
    assert "<b>31.00 ± 1.50</b>" in marked.html and "<b>10.00 ± 1.00</b>" in marked.html
    assert "<b>0.9000 ± 0.0100</b>" in marked.html  # SSIM: higher is better, bicubic wins here
    assert "**31.00 ± 1.50**" in marked.markdown


def test_rejected_table():
    q = pd.DataFrame({"image_id": ["a"], "source": ["a.png"], "stage": ["ingest"], "reason": ["empty"]})
    r = pd.DataFrame({"image_id": ["b"], "source": ["b.png"], "stage": ["crop_filter"], "reason": ["flat"]})
    table = report.rejected_table(q, r)
    assert list(table.columns) == ["stage", "image_id", "source", "reason"]
    assert list(table["image_id"]) == ["a", "b"]
    empty = report.rejected_table(q.iloc[:0], r.iloc[:0])
    assert empty.empty and list(empty.columns) == ["stage", "image_id", "source", "reason"]


def test_load_images(tmp_path):
    shards.write_shard(tmp_path / "0.parquet", pd.DataFrame({"image_id": ["a", "b"]}),
                       [np.zeros((2, 2), np.uint8), np.ones((3, 3), np.uint8)])
    shards.write_shard(tmp_path / "1.parquet", pd.DataFrame({"image_id": ["c"]}), [np.full((4, 4), 5, np.uint8)])
    found = report.load_images([tmp_path / "0.parquet", tmp_path / "1.parquet"], ["c", "a", "zz"])
    assert set(found) == {"a", "c"}
    assert found["c"].shape == (4, 4) and found["a"].shape == (2, 2)


# --------------------------------------------------------------------------- write_report


@pytest.fixture
def png(tmp_path):
    image = np.zeros((10, 20, 3), np.uint8)
    image[:, :10, 2] = 255
    ok, buf = cv2.imencode(".png", image)
    path = tmp_path / "samples_x4.png"
    path.write_bytes(buf.tobytes())
    return path


def test_write_report(tmp_path, png):
    out = tmp_path / "report"
    table = pd.DataFrame({"method": ["bicubic"], "psnr_mean": [31.5]})
    sections = [
        ("SR methods", "PSNR & SSIM", table),
        ("Samples <x4>", "LR, SR, HR", png),
    ]
    report.write_report(out, "My <report>", sections, "seed: 0\nshards: 4\n")
    page = (out / "index.html").read_text()
    md = (out / "summary.md").read_text()

    assert page.startswith("<!DOCTYPE html>")
    assert "<title>My &lt;report&gt;</title>" in page and "<h1>My &lt;report&gt;</h1>" in page
    assert "PSNR &amp; SSIM" in page and "Samples &lt;x4&gt;" in page
    assert "31.500" in page
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == 1
    assert base64.b64decode(embedded[0]) == png.read_bytes()
    assert "seed: 0" in page

    assert md.startswith("# My <report>\n")
    assert "## SR methods\n\nPSNR & SSIM" in md
    assert report.markdown_table(table) in md
    assert f"![Samples <x4>]({png.name})" in md
    assert "```yaml\nseed: 0\nshards: 4\n```" in md
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "summary.md"]


def test_write_report_config_without_trailing_newline(tmp_path):
    report.write_report(tmp_path, "t", [], "seed: 0")
    md = (tmp_path / "summary.md").read_text()
    assert "\n```\n" in md or md.endswith("\n```")


def test_save_table(tmp_path):
    table = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    report.save_table(table, tmp_path, "counts")
    pd.testing.assert_frame_equal(shards.read_table(tmp_path / "tables" / "counts.parquet"), table, check_dtype=False)
    assert (tmp_path / "tables" / "counts.csv").read_text() == "a,b\n1,x\n2,y\n"


def test_sample_grid(tmp_path):
    ids = ["d/g/a", "d/g/b"]
    hr = {i: np.full((16, 16), 100, np.uint8) for i in ids}
    lr = {i: np.full((4, 4), 100, np.uint8) for i in ids}
    sr = {"nearest": hr, "bicubic": hr}
    report.sample_grid(ids, hr, lr, sr, "title", tmp_path / "grid.png")
    image = cv2.imread(str(tmp_path / "grid.png"))
    assert image is not None and image.shape[1] > image.shape[0]  # 4 columns, 2 rows


def test_software_versions():
    table = report.software_versions()
    assert table.loc[0, "package"] == "python"
    assert set(report.PACKAGES) <= set(table["package"])
