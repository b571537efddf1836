"""Tests for karyosr.report (tables, findings, figures, page): sample choice, tables, and the HTML/Markdown report."""

from __future__ import annotations

import base64
import re

import cv2
import numpy as np
import pandas as pd
import pytest

from karyosr.dataset.split import SPLITS
from karyosr.io import shards
from karyosr.labels import CLASS_NAMES
from karyosr.report import figures, findings, page, tables


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
    first = figures.pick_samples(split, 6)
    assert first == figures.pick_samples(split, 6)
    assert first == figures.pick_samples(split.sample(frac=1.0, random_state=3), 6)
    assert len(first) == len(set(first)) == 6


def test_pick_samples_only_test_split():
    split = _split_manifest()
    ids = figures.pick_samples(split, 10)
    assert set(split.set_index("image_id").loc[ids, "split"]) == {"test"}


@pytest.mark.parametrize("n", [2, 4, 8, 12, 24])
def test_pick_samples_spreads_over_classes(n):
    split = _split_manifest(per_class=3)
    labels = _labels(split, figures.pick_samples(split, n))
    assert len(set(labels)) == n  # one per class while classes last
    if n >= 2:
        assert min(labels) == 0 and max(labels) == 23  # from the first class to the last


def test_pick_samples_spreads_over_unbalanced_classes():
    rows = [{"image_id": f"d/g/a{i:02d}", "label": 0, "split": "test"} for i in range(12)]
    rows += [{"image_id": f"d/g/b{label}{i}", "label": label, "split": "test"} for label in (1, 2, 3) for i in range(2)]
    split = pd.DataFrame(rows)
    labels = _labels(split, figures.pick_samples(split, 4))
    assert sorted(labels) == [0, 1, 2, 3]


def test_pick_samples_small_and_empty():
    split = _split_manifest(per_class=1, classes=[3, 7])
    ids = figures.pick_samples(split, 10)
    assert sorted(ids) == sorted(split.loc[split["split"] == "test", "image_id"])
    assert figures.pick_samples(split[split["split"] != "test"], 4) == []


# --------------------------------------------------------------------------- tables


def test_markdown_table():
    table = pd.DataFrame({"method": ["bicubic", "nearest"], "psnr_mean": [30.12345, 28.0], "n_images": [10, 3]})
    text = page.markdown_table(table)
    lines = text.split("\n")
    assert lines[0] == "| method | psnr_mean | n_images |"
    assert lines[1] == "|---|---|---|"
    assert lines[2] == "| bicubic | 30.123 | 10 |"
    assert lines[3] == "| nearest | 28.000 | 3 |"
    assert len(lines) == 4
    assert page.markdown_table(table, digits=1).split("\n")[2] == "| bicubic | 30.1 | 10 |"


def test_markdown_table_empty():
    assert page.markdown_table(pd.DataFrame(columns=["a", "b"])) == "| a | b |\n|---|---|"


def test_html_table():
    html = page.html_table(pd.DataFrame({"x": [1.23456], "name": ["<b>"]}))
    assert "1.235" in html and "&lt;b&gt;" in html and "<table" in html


def test_stage_counts_add_up():
    ingest = pd.DataFrame({"image_id": [f"i{i}" for i in range(10)]})
    quarantined = pd.DataFrame({"image_id": ["q1", "q2"]})
    cropped = pd.DataFrame({"image_id": [f"i{i}" for i in range(7)]})
    rejected = pd.DataFrame({"image_id": ["i7", "i8", "i9"]})
    split = pd.DataFrame({"image_id": [f"i{i}" for i in range(7)], "group": ["a", "a", "b", "c", "d", "d", "e"],
                          "split": ["train", "train", "train", "val", "test", "test", "train"]})
    table = tables.stage_counts(ingest, quarantined, cropped, rejected, split).set_index("stage")
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
    table = tables.class_counts(split)
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
    table = tables.class_counts(split)
    assert table["val"].sum() == 0 and table["test"].sum() == 0 and table["train"].sum() == 1


def test_method_table_gain_over_bicubic():
    summary = pd.DataFrame({"profile": ["x2", "x2", "x4", "x4"], "method": ["bicubic", "nearest", "bicubic", "lanczos"],
                            "psnr_mean": [30.0, 27.5, 25.0, 25.5]})
    summary["ssim_mean"] = [0.8, 0.6, 0.5, 0.55]
    table = tables.method_table(summary, ["nearest", "bicubic", "lanczos"])
    assert list(table["method"]) == ["nearest", "bicubic", "bicubic", "lanczos"]
    assert list(table["psnr_gain_db"]) == pytest.approx([-2.5, 0.0, 0.0, 0.5])  # dB, never a % of dB
    assert list(table["ssim_gain"]) == pytest.approx([-0.2, 0.0, 0.0, 0.05])


def test_comparison_marks_the_best_value_per_column():
    summary = pd.DataFrame({"profile": "x4", "method": ["bicubic", "srresnet"], "psnr_mean": [30.0, 31.0],
                            "psnr_std": [1.0, 1.5], "mse_mean": [20.0, 10.0], "mse_std": [2.0, 1.0],
                            "ssim_mean": [0.9, 0.8], "ssim_std": [0.01, 0.02]})
    marked = tables.comparison(tables.method_table(summary, ["bicubic", "srresnet"]), "x4")
    assert "<b>31.00 ± 1.50</b>" in marked.html and "<b>10.00 ± 1.00</b>" in marked.html
    assert "<b>0.9000 ± 0.0100</b>" in marked.html  # SSIM: higher is better, bicubic wins here
    assert "**31.00 ± 1.50**" in marked.markdown
    assert "<b>+1.00</b>" in marked.html and "PSNR vs bicubic (dB)" in marked.html and "%" not in marked.html


def test_comparison_bolds_no_no_reference_score_nor_a_column_of_ties():
    summary = pd.DataFrame({"profile": "x4", "method": ["bicubic", "nearest", "srresnet"],
                            "psnr_mean": [30.0, 28.0, 31.0], "niqe_mean": [5.0, 3.0, 4.0],
                            "piqe_mean": [40.0, 20.0, 30.0],
                            "mse_mean": [10.0, 10.0, 10.001], "ssim_mean": [0.9, 0.95, 0.95]})
    marked = tables.comparison(tables.method_table(summary, ["bicubic", "nearest", "srresnet"]), "x4")
    rows = {line.split(" | ")[0].strip("| "): line for line in marked.markdown.split("\n")[2:]}
    assert "**" not in rows["nearest"].split(" | ")[1]  # PSNR: srresnet's
    assert "**3.00**" not in marked.markdown and "**20.00**" not in marked.markdown  # NIQE, PIQE: never bold
    assert marked.markdown.count("**10.00**") == 0  # MSE 10.00 everywhere as shown: all tie
    assert rows["nearest"].count("**0.9500**") == 1 and rows["srresnet"].count("**0.9500**") == 1  # a tie for best
    assert tables.best_rows(pd.Series([0.0, 0.0, np.nan]), "higher", 3) == set()  # 0 % everywhere: nothing to name
    assert tables.best_rows(pd.Series([0.2, np.nan]), "higher", 3) == set()  # one value: nothing to rank


def test_rejected_table():
    q = pd.DataFrame({"image_id": ["a"], "source": ["a.png"], "stage": ["ingest"], "reason": ["empty"]})
    r = pd.DataFrame({"image_id": ["b"], "source": ["b.png"], "stage": ["crop_filter"], "reason": ["flat"]})
    table = tables.rejected_table(q, r)
    assert list(table.columns) == ["stage", "image_id", "source", "reason"]
    assert list(table["image_id"]) == ["a", "b"]
    empty = tables.rejected_table(q.iloc[:0], r.iloc[:0])
    assert empty.empty and list(empty.columns) == ["stage", "image_id", "source", "reason"]


def test_load_images(tmp_path):
    shards.write_shard(tmp_path / "0.parquet", pd.DataFrame({"image_id": ["a", "b"]}),
                       [np.zeros((2, 2), np.uint8), np.ones((3, 3), np.uint8)])
    shards.write_shard(tmp_path / "1.parquet", pd.DataFrame({"image_id": ["c"]}), [np.full((4, 4), 5, np.uint8)])
    found = figures.load_images([tmp_path / "0.parquet", tmp_path / "1.parquet"], ["c", "a", "zz"])
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
    page.write_report(out, "My <report>", sections, "seed: 0\nshards: 4\n")
    index_html = (out / "index.html").read_text()
    md = (out / "summary.md").read_text()

    assert index_html.startswith("<!DOCTYPE html>")
    assert "<title>My &lt;report&gt;</title>" in index_html and "<h1>My &lt;report&gt;</h1>" in index_html
    assert "PSNR &amp; SSIM" in index_html and "Samples &lt;x4&gt;" in index_html
    assert "31.500" in index_html
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', index_html)
    assert len(embedded) == 1
    assert base64.b64decode(embedded[0]) == png.read_bytes()
    assert "seed: 0" in index_html

    assert md.startswith("# My <report>\n")
    assert "## SR methods\n\nPSNR & SSIM" in md
    assert page.markdown_table(table) in md
    assert f"![Samples <x4>]({png.name})" in md
    assert "```yaml\nseed: 0\nshards: 4\n```" in md
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "summary.md"]


def test_write_report_links_pages_beside_it(tmp_path):
    page.write_report(tmp_path, "t", [], "seed: 0", links=[("Viewer <all images>", "viewer.html")])
    index_html = (tmp_path / "index.html").read_text()
    assert '<a href="viewer.html">Viewer &lt;all images&gt;</a>' in index_html
    assert "[Viewer <all images>](viewer.html)" in (tmp_path / "summary.md").read_text()
    page.write_report(tmp_path, "t", [], "seed: 0")
    assert "<a href" not in (tmp_path / "index.html").read_text()


def test_write_report_config_without_trailing_newline(tmp_path):
    page.write_report(tmp_path, "t", [], "seed: 0")
    md = (tmp_path / "summary.md").read_text()
    assert "\n```\n" in md or md.endswith("\n```")


def test_save_table(tmp_path):
    table = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    tables.save_table(table, tmp_path, "counts")
    pd.testing.assert_frame_equal(shards.read_table(tmp_path / "tables" / "counts.parquet"), table, check_dtype=False)
    assert (tmp_path / "tables" / "counts.csv").read_text() == "a,b\n1,x\n2,y\n"


def test_sample_grid(tmp_path):
    ids = ["d/g/a", "d/g/b"]
    hr = {i: np.full((16, 16), 100, np.uint8) for i in ids}
    lr = {i: np.full((4, 4), 100, np.uint8) for i in ids}
    sr = {"nearest": hr, "bicubic": hr}
    figures.sample_grid(ids, hr, lr, sr, "title", tmp_path / "grid.png")
    image = cv2.imread(str(tmp_path / "grid.png"))
    assert image is not None and image.shape[1] > image.shape[0]  # 4 columns, 2 rows


def test_software_versions():
    table = tables.software_versions()
    assert table.loc[0, "package"] == "python"
    assert set(tables.PACKAGES) <= set(table["package"])


# --------------------------------------------------------------------------- classification tables


def _over_seeds(decoded=True):
    table = pd.DataFrame({"experiment": ["hr", "lr"], "backbone": "dcnn", "input": ["hr", "lr:x4"],
                          "balance": "smote", "seeds": 1, "interval": "95% bootstrap over 3 test cells and 1 seed",
                          "adaptive_crop": True, "x_images": 6, "y_images": 2,
                          "x_accuracy_hits": [5.0, 3.0], "y_accuracy_hits": [1.0, np.nan]})
    metrics = ["accuracy", "macro_f1", "x_accuracy", "y_accuracy"] + (["accuracy_decoded"] if decoded else [])
    for i, metric in enumerate(metrics):
        table[f"{metric}_mean"] = [0.9 - 0.01 * i, 0.5]
        table[f"{metric}_ci_low"] = [0.85 - 0.01 * i, 0.4]
        table[f"{metric}_ci_high"] = [0.95 - 0.01 * i, 0.6]
    table.loc[:, ["y_accuracy_mean", "y_accuracy_ci_low", "y_accuracy_ci_high"]] = [[0.5, 0.0, 1.0], [np.nan] * 3]
    return table


def test_classification_tables_show_intervals_class_images_and_decoded_accuracy():
    networks, ablation = tables.classification_tables(_over_seeds())
    header = networks.markdown.split("\n")[0]
    assert header == "| method | accuracy | accuracy, cell decoded | macro-F1 | X accuracy | Y accuracy |"
    assert ("| hr (dcnn, hr) | **90.0 % [85.0, 95.0]** | **86.0 % [81.0, 91.0]** | **0.89 [0.84, 0.94]** |"
            in networks.markdown)
    assert "| **88.0 % (5/6) [83.0, 93.0]** | 50.0 % (1/2) [0.0, 100.0] |" in networks.markdown
    assert "| lr (dcnn, lr:x4) | 50.0 % [40.0, 60.0] |" in networks.markdown and "| – |" in networks.markdown
    assert "±" not in networks.markdown and "nan" not in networks.markdown.lower()
    assert "**90.0 % [85.0, 95.0]**" in ablation.markdown and "50.0 % [40.0, 60.0]" in ablation.markdown
    plain, _ = tables.classification_tables(_over_seeds(decoded=False))
    assert "decoded" not in plain.markdown


def test_classification_tables_hits_averaged_over_seeds_no_bold_on_ties_and_no_interval_from_one_cell():
    table = _over_seeds().assign(seeds=3, x_accuracy_hits=[4.3333, 3.0], y_accuracy_hits=0.0)
    table[["y_accuracy_mean", "y_accuracy_ci_low", "y_accuracy_ci_high"]] = 0.0  # 0 % [0, 0] for both: no best
    table[["accuracy_ci_low", "accuracy_ci_high"]] = np.nan  # a single test cell: no interval
    networks, _ = tables.classification_tables(table)
    assert "(4.3/6)" in networks.markdown and "| **90.0 %** |" in networks.markdown
    assert [line.split(" | ")[-1] for line in networks.markdown.split("\n")[2:]] == ["0.0 % (0/2) [0.0, 0.0] |"] * 2


def test_classification_tables_show_the_decoded_sex_calls():
    sex_calls = pd.DataFrame({"experiment": ["hr", "lr"], "seeds": 1, "cells_known": [3, 0], "calls": [3, 0],
                              "correct": [1, 0], "wrong": [2, 0], "undetermined": [0, 0]})
    over_seeds = tables.with_sex_calls(_over_seeds(), sex_calls)
    assert over_seeds.loc[0, ["sex_cells_known", "sex_correct", "sex_wrong"]].tolist() == [3, 1, 2]
    networks, _ = tables.classification_tables(over_seeds)
    assert networks.markdown.split("\n")[0].endswith("| Y accuracy | decoded sex correct |")
    assert "| 1 of 3 cells (2 wrong, 0 undetermined) |" in networks.markdown
    assert "| no test cell of known sex |" in networks.markdown
    several, _ = tables.classification_tables(tables.with_sex_calls(
        _over_seeds().assign(seeds=3), sex_calls.assign(calls=[9, 0], correct=[4, 0], wrong=[5, 0])))
    assert "| 4 of 9 calls (3 cells × 3 seeds; 5 wrong, 0 undetermined) |" in several.markdown


def _per_class(decoded=True):
    rows = []
    for experiment, accuracy in (("hr", 0.9), ("lr", 0.3)):
        for label, name in enumerate(CLASS_NAMES):
            absent = name == "Y"
            row = {"experiment": experiment, "class": name, "support": 0 if absent else 4,
                   "hits": np.nan if absent else 4 * accuracy, "accuracy": np.nan if absent else accuracy,
                   "accuracy_ci_low": np.nan if absent else accuracy - 0.2,
                   "accuracy_ci_high": np.nan if absent else min(1.0, accuracy + 0.2),
                   "precision": accuracy, "f1": accuracy}
            if decoded:
                row |= {"hits_decoded": np.nan if absent else 4 * (accuracy + 0.05),
                        "accuracy_decoded": np.nan if absent else accuracy + 0.05,
                        "accuracy_decoded_ci_low": np.nan if absent else accuracy - 0.15,
                        "accuracy_decoded_ci_high": np.nan if absent else 1.0}
            rows.append(row)
    return pd.DataFrame(rows)


def test_per_class_heatmap_is_classes_by_experiments():
    heatmap = tables.per_class_heatmap(_per_class())
    lines = heatmap.markdown.split("\n")
    assert lines[0] == "| class (test images) | hr | lr |" and len(lines) == 2 + 24
    assert lines[2] == ("| 1 (4) | 90 % (3.6/4) [70, 100]; decoded 95 % (3.8/4) [75, 100] | "
                        "30 % (1.2/4) [10, 50]; decoded 35 % (1.4/4) [15, 100] |")
    assert lines[-1] == "| Y (0) | – | – |"
    assert heatmap.html.count("<tr>") == 25 and "rgba(31, 119, 180, 0.90)" in heatmap.html
    assert "[70, 100]<br>decoded" in heatmap.html
    assert (tables.per_class_heatmap(_per_class(decoded=False)).markdown.split("\n")[2]
            == "| 1 (4) | 90 % (3.6/4) [70, 100] | 30 % (1.2/4) [10, 50] |")


def test_flagged_cells_table_counts_reasons_over_runs():
    cells = pd.DataFrame({
        "experiment": ["a", "a", "b", "b"], "seed": 0, "cell": ["c1", "c2", "c1", "c2"],
        "chromosomes": [47, 46, 47, 46], "sex": ["XY", "XX", "XY", "XX"], "true_sex": ["XY", "XX", "XY", "XX"],
        "relabelled": 0, "lacking": "", "extra_copy": ["", "", "", "+7"], "extra_copy_log10_ratio": [0, 0, 0, 3.2],
        "flagged": [True, False, True, True],
        "reason": ["47 chromosomes (expected 46)", "", "47 chromosomes (expected 46)",
                   "+7 is 1.58e+03 times likelier than a normal karyotype"]})
    table = tables.flagged_cells_table(cells).set_index("cell")
    assert list(table.index) == ["c1", "c2"]
    assert table.loc["c1", "reasons"] == "47 chromosomes (expected 46)"
    assert table.loc["c1", "flagged in"] == "2 of 2 runs" and table.loc["c1", "decoded sex"] == "XY"
    assert table.loc["c2", "reasons"] == "extra copy +7 (1 of 2 runs)"
    assert tables.flagged_cells_table(cells.assign(flagged=False)).empty


# --------------------------------------------------------------------------- findings


def _per_image(gain_fg=1.5, fg=True, learned=(("srresnet", 0.0),), cells=6):
    """30 test images in ``cells`` cells; bicubic, lanczos a hair better, and learned models
    ``gain_fg`` plus their offset better, each with its own per-image noise inside the chromosome."""
    ids = [f"d/c{i % cells}/{i:02d}" for i in range(30)]
    rng = np.random.default_rng(0)
    frames = []
    for method, gain in (("bicubic", 0.0), ("lanczos", 0.01), *((m, gain_fg + offset) for m, offset in learned)):
        frame = pd.DataFrame({"image_id": ids, "profile": "x4", "method": method, "psnr": 30 + gain})
        if fg:
            frame["psnr_fg"] = 24 + gain + rng.normal(0, 0.3, len(ids))
        frames.append(frame)
    split = pd.DataFrame({"image_id": ids, "group": [i.split("/")[1] for i in ids]})
    return pd.concat(frames, ignore_index=True), split


def test_sr_findings_name_the_best_method_with_its_cell_interval():
    per_image, split = _per_image()
    line, ranked = findings.sr_findings(per_image, split, n_boot=500)
    assert line.startswith("x4: srresnet gains most over bicubic in PSNR inside the chromosome: ")
    assert "larger than its uncertainty" in line and "95% CI" in line
    assert ranked.startswith("x4, best vs runner-up in PSNR inside the chromosome (per-image differences, 95% "
                             "bootstrap interval over test groups): srresnet is ahead of lanczos by +1.")
    assert "learned" not in ranked  # one learned model: nothing to rank it against
    assert findings.sr_findings(per_image, split, n_boot=500) == [line, ranked]  # seeded
    worse, _ = _per_image(gain_fg=-2.0, fg=False)
    line, _ = findings.sr_findings(worse[worse["method"] != "lanczos"], split, n_boot=500)
    assert line.startswith("x4: no method beats bicubic; the closest is srresnet in PSNR: 28.00 vs 30.00 dB, -2.00 dB")
    assert findings.sr_findings(per_image[per_image["method"] != "bicubic"], split, n_boot=500) == []


def test_sr_findings_rank_learned_models_and_say_when_they_are_not_told_apart():
    per_image, split = _per_image(learned=(("rrdb_bicubic", 0.02), ("esrgan_bicubic", 0.0), ("srcnn", -1.0)))
    _, ranked = findings.sr_findings(per_image, split, n_boot=500)
    match = re.search(r"test groups\): rrdb_bicubic and esrgan_bicubic are not told apart: "
                      r"([+-]\d\.\d\d) dB \[([+-]\d\.\d\d), ([+-]\d\.\d\d)\]\.$", ranked)
    assert match, ranked
    difference, low, high = map(float, match.groups())
    assert low < 0 < high and low <= difference <= high
    # the two best are interpolations: the learned models get their own comparison
    per_image, split = _per_image(gain_fg=-3.0, learned=(("srresnet", 0.0), ("srcnn", -1.0)))
    _, ranked = findings.sr_findings(per_image, split, n_boot=500)
    assert re.search(r"test groups\): lanczos (is ahead of|and) bicubic", ranked), ranked
    assert "; of the learned models, srresnet is ahead of srcnn by +1." in ranked


def test_sr_findings_from_a_single_test_cell_give_no_interval():
    per_image, split = _per_image(cells=1, learned=(("srresnet", 0.0), ("srgan", -0.5)))
    line, ranked = findings.sr_findings(per_image, split, n_boot=200)
    assert line.endswith("dB (one test group: no interval).")
    assert "srresnet and srgan are not told apart: +0.5" in ranked and "(one test group: no interval)" in ranked


def _comparison(kind, experiment, baseline, metric, value, reference, low, high, share=(np.nan, np.nan, np.nan)):
    return {"comparison": kind, "experiment": experiment, "baseline": baseline, "metric": metric,
            "experiment_value": value, "baseline_value": reference, "difference": value - reference,
            "ci_low": low, "ci_high": high, "share_of_gap": share[0], "share_of_gap_ci_low": share[1],
            "share_of_gap_ci_high": share[2]}


def test_classification_findings_from_comparisons():
    over_seeds = pd.DataFrame({"experiment": ["hr", "lr", "sr", "hr_none"], "input": ["hr", "lr:x4", "sr:m:x4", "hr"],
                               "balance": ["smote", "smote", "smote", "none"]})
    comparisons = pd.DataFrame([
        _comparison("sr_route", "sr", "lr", "accuracy", 0.6, 0.4, 0.1, 0.3, share=(0.5, 0.25, 0.75)),
        _comparison("lr_to_hr_gap", "hr", "lr", "accuracy", 0.8, 0.4, 0.3, 0.5),
        _comparison("balance", "hr", "hr_none", "x_accuracy", 0.5, 0.1, 0.2, 0.6),
        _comparison("balance", "hr", "hr_none", "y_accuracy", np.nan, np.nan, np.nan, np.nan),
        _comparison("cell_decoding", "hr", "hr", "accuracy", 0.85, 0.8, 0.02, 0.08),
        _comparison("cell_decoding", "lr", "lr", "accuracy", 0.41, 0.4, -0.02, 0.04),
    ])
    cells = pd.DataFrame({"experiment": "hr", "seed": [0, 1, 0, 0], "cell": ["c1", "c1", "c2", "c3"],
                          "flagged": [True, False, False, True], "extra_copy": ["+21", "", "", ""],
                          "true_sex": ["XY", "XY", "XX", ""], "sex": ["XX", "XY", "XX or XY", "XX"]})
    gap, smote, decoding, sex = findings.classification_findings(comparisons, over_seeds, cells)
    assert gap.startswith("LR-to-HR accuracy gap (hr vs lr): 80.0% vs 40.0%, +40.0 points (95% CI +30.0 to +50.0; "
                          "larger than its uncertainty). sr (sr:m:x4) closes 50% [25%, 75%] of it, +20.0 points")
    assert smote.startswith("SMOTE (hr vs hr_none, balance none): X accuracy 50% vs 10%, +40.0 points")
    assert "Y accuracy" not in smote  # no Y in the test set: nothing to say
    assert decoding.startswith("Cell decoding changes accuracy by +1.0 to +5.0 points over 2 experiments, larger than "
                               "its uncertainty in 1; largest: hr +5.0 points")
    assert decoding.endswith("2 of 3 test cells are flagged as possible numerical abnormalities in at least one run "
                             "(table 'Classification: flagged cells'): 1 for an extra copy of a class likelier than a "
                             "normal karyotype, 1 for their chromosome count alone.")
    assert sex == ("Decoded sex vs the true one (test cells whose labels hold a Y or two X): 1 of 3 calls correct "
                   "(2 test cells × 2 seeds; 1 wrong, 1 undetermined) in hr.")
    one_seed = findings.sex_call_sentence(pd.DataFrame({"experiment": ["plain_hr", "none"], "seeds": 1,
                                                        "cells_known": [3, 0], "calls": [3, 0], "correct": [1, 0],
                                                        "wrong": [2, 0], "undetermined": [0, 0]}))
    assert one_seed == ("Decoded sex vs the true one (test cells whose labels hold a Y or two X): 1 of 3 test cells "
                        "called correctly (2 wrong, 0 undetermined) in plain_hr.")
    assert "no call can be checked" in findings.sex_call_sentence(pd.DataFrame(
        {"experiment": ["a"], "seeds": 1, "cells_known": 0, "calls": 0, "correct": 0, "wrong": 0, "undetermined": 0}))
    nothing = findings.flag_summary(cells.assign(flagged=False))
    assert nothing == ("0 of 3 test cells are flagged as possible numerical abnormalities in at least one run "
                       "(table 'Classification: flagged cells').")


def test_classification_findings_degrade_when_experiments_are_missing():
    over_seeds = pd.DataFrame({"experiment": ["lr", "sr"], "input": ["lr:x4", "sr:m:x4"], "balance": "smote"})
    comparisons = pd.DataFrame([_comparison("sr_route", "sr", "lr", "accuracy", 0.42, 0.4, -0.05, 0.09)])
    (line,) = findings.classification_findings(comparisons, over_seeds, pd.DataFrame(columns=["cell", "flagged"]))
    assert line == ("SR routes vs the LR input lr (no HR experiment to measure a gap): sr (sr:m:x4) +2.0 points "
                    "(95% CI -5.0 to +9.0; the interval includes 0: not a measured difference) over LR.")
    assert findings.classification_findings(comparisons.iloc[:0], over_seeds, pd.DataFrame()) == []


def test_write_report_renders_findings_as_bullets_and_text_only_sections(tmp_path):
    page.write_report(tmp_path, "t", [("Findings", "From the tables.", ["a < b", "c"]),
                                      ("Flagged cells", "No cell was flagged.", None)], "seed: 0")
    index_html = (tmp_path / "index.html").read_text()
    md = (tmp_path / "summary.md").read_text()
    assert "<ul><li>a &lt; b</li><li>c</li></ul>" in index_html
    assert "## Findings\n\nFrom the tables.\n\n- a < b\n- c\n\n## Flagged cells\n\nNo cell was flagged.\n\n## Configuration" in md
    assert "<img" not in index_html
