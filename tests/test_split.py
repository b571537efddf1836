"""Tests for karyosr.dataset.split: group-wise, stratified, seeded train/val/test assignment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from karyosr.dataset.split import SPLITS, SplitError, assign_groups, run, split_manifest
from karyosr.io import shards

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def _manifest(n_groups=60, seed=1, min_size=20, max_size=46, n_classes=24):
    """Synthetic manifest: each group (a metaphase cell) holds a random set of labelled images."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for i, label in enumerate(rng.integers(0, n_classes, rng.integers(min_size, max_size + 1))):
            rows.append({"image_id": f"d/g{g:03d}/{i}", "group": f"g{g:03d}", "label": int(label)})
    frame = pd.DataFrame(rows)
    frame["label"] = frame["label"].astype("Int8")
    return frame


def _karyotype_manifest(n_cells):
    """Cells of 46 chromosomes: two of each autosome plus XX or XY."""
    rows = []
    for c in range(n_cells):
        labels = [k for k in range(22) for _ in range(2)] + ([22, 22] if c % 3 else [22, 23])
        rows += [{"image_id": f"d/c{c:03d}/{i}", "group": f"c{c:03d}", "label": lab} for i, lab in enumerate(labels)]
    frame = pd.DataFrame(rows)
    frame["label"] = frame["label"].astype("Int8")
    return frame


def test_no_group_in_two_splits():
    out = split_manifest(_manifest(), FRACTIONS, seed=0)
    assert out.groupby("group")["split"].nunique().max() == 1
    assert set(out["split"]) == set(SPLITS)
    assert out["split"].notna().all()


def test_keeps_rows_and_columns():
    manifest = _manifest(n_groups=10)
    manifest["extra"] = np.arange(len(manifest))
    out = split_manifest(manifest, FRACTIONS, seed=0)
    assert len(out) == len(manifest)
    pd.testing.assert_frame_equal(out.drop(columns="split"), manifest)
    assert "split" not in manifest.columns  # the input is not modified


@pytest.mark.parametrize("fractions", [FRACTIONS, {"train": 0.5, "val": 0.25, "test": 0.25},
                                       {"train": 0.8, "val": 0.0, "test": 0.2}])
def test_fractions_roughly_respected(fractions):
    out = split_manifest(_manifest(n_groups=60), fractions, seed=0)
    share = out["split"].value_counts(normalize=True).reindex(SPLITS, fill_value=0)
    for name in SPLITS:
        assert share[name] == pytest.approx(fractions[name], abs=0.05), share.to_dict()


def test_zero_fraction_split_stays_empty():
    out = split_manifest(_manifest(n_groups=20), {"train": 0.8, "val": 0.0, "test": 0.2}, seed=3)
    assert (out["split"] == "val").sum() == 0
    assert set(out["split"]) == {"train", "test"}


def test_stratified_every_class_in_train():
    out = split_manifest(_manifest(n_groups=60), FRACTIONS, seed=0)
    per_split = pd.crosstab(out["label"], out["split"])
    assert (per_split["train"] > 0).all()
    # with 60 cells every class reaches val and test too
    assert (per_split["val"] > 0).all() and (per_split["test"] > 0).all()


def test_stratified_class_shares_per_split():
    out = split_manifest(_karyotype_manifest(40), FRACTIONS, seed=0)
    table = pd.crosstab(out["label"], out["split"])
    shares = table.div(table.sum(axis=1), axis=0)
    assert (table["train"] > 0).all()
    # autosomes: every cell has two, so each split gets about its fraction of each class
    assert shares.loc[list(range(22)), "train"].between(0.55, 0.85).all()


def test_rare_class_reaches_train():
    manifest = _manifest(n_groups=30, n_classes=5, min_size=10, max_size=12)
    rare = pd.DataFrame({"image_id": ["d/g005/r1", "d/g017/r2"], "group": ["g005", "g017"],
                         "label": pd.array([23, 23], dtype="Int8")})
    manifest = pd.concat([manifest, rare], ignore_index=True)
    for seed in range(5):
        out = split_manifest(manifest, FRACTIONS, seed=seed)
        assert (out.loc[out["label"] == 23, "split"] == "train").any(), seed


def test_seeded_determinism():
    manifest = _manifest()
    a = split_manifest(manifest, FRACTIONS, seed=11)
    b = split_manifest(manifest.sample(frac=1.0, random_state=5), FRACTIONS, seed=11)  # row order must not matter
    pd.testing.assert_series_equal(
        a.set_index("image_id")["split"].sort_index(), b.set_index("image_id")["split"].sort_index())


def test_different_seed_gives_different_assignment():
    manifest = _manifest()
    base = assign_groups(manifest, FRACTIONS, 0)
    changed = [s for s in range(1, 6) if assign_groups(manifest, FRACTIONS, s) != base]
    assert changed, "seeds 1-5 all gave the assignment of seed 0"


def test_missing_labels_are_allowed():
    manifest = _manifest(n_groups=20)
    manifest.loc[::7, "label"] = pd.NA
    out = split_manifest(manifest, FRACTIONS, seed=0)
    assert out["split"].notna().all()


def test_empty_split_error_names_split_and_counts():
    manifest = _manifest(n_groups=2, min_size=10, max_size=10)
    with pytest.raises(SplitError) as info:
        split_manifest(manifest, FRACTIONS, seed=0)
    message = str(info.value)
    assert "is empty" in message
    assert any(f"'{name}'" in message for name in ("val", "test"))
    assert "2 groups" in message and "20 images" in message
    assert "train=" in message and "val=" in message and "test=" in message


def test_two_groups_two_nonzero_fractions_ok():
    manifest = _manifest(n_groups=2, min_size=10, max_size=10)
    out = split_manifest(manifest, {"train": 0.5, "val": 0.0, "test": 0.5}, seed=0)
    assert sorted(out.groupby("group")["split"].first()) == ["test", "train"]


def test_run_writes_manifest(tmp_path):
    manifest = _manifest(n_groups=12)
    shards.write_table(tmp_path / "in.parquet", manifest)
    run(tmp_path / "in.parquet", FRACTIONS, 0, tmp_path / "out" / "split.parquet")
    out = shards.read_table(tmp_path / "out" / "split.parquet")
    expected = split_manifest(manifest, FRACTIONS, 0)
    assert list(out["split"]) == list(expected["split"])


def test_run_empty_manifest(tmp_path):
    shards.write_table(tmp_path / "in.parquet", pd.DataFrame(columns=["image_id", "group", "label"]))
    with pytest.raises(SplitError, match="no images"):
        run(tmp_path / "in.parquet", FRACTIONS, 0, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()
