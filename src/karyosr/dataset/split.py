"""split: train/val/test by group (metaphase cell, patient), stratified by label as groups allow."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from karyosr.io import shards

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class SplitError(ValueError):
    pass


def assign_groups(manifest: pd.DataFrame, fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Map each group to a split.

    Greedy: groups go largest first (ties in seeded random order) to the split where they
    reduce the squared shortfall of per-class counts against the fraction targets the most.
    Whole groups move, so a cell never straddles two splits.
    """
    labels = manifest["label"].fillna(-1).astype(int)
    counts = pd.crosstab(manifest["group"], labels)
    rng = np.random.default_rng(seed)
    shuffled = counts.iloc[rng.permutation(len(counts))]
    order = shuffled.sum(axis=1).sort_values(ascending=False, kind="stable").index

    totals = counts.sum(axis=0).to_numpy(dtype=float)
    names = [s for s in SPLITS if fractions[s] > 0]
    targets = {s: fractions[s] * totals for s in names}
    current = {s: np.zeros_like(totals) for s in names}
    weight = 1.0 / (totals + 1.0)
    assignment = {}
    for group in order:
        c = counts.loc[group].to_numpy(dtype=float)
        cost = {
            s: float((weight * ((current[s] + c - targets[s]) ** 2 - (current[s] - targets[s]) ** 2)).sum())
            for s in names
        }
        best = min(names, key=lambda s: cost[s])
        current[best] += c
        assignment[group] = best
    return assignment


def split_manifest(manifest: pd.DataFrame, fractions: dict[str, float], seed: int) -> pd.DataFrame:
    assignment = assign_groups(manifest, fractions, seed)
    out = manifest.copy()
    out["split"] = out["group"].map(assignment)
    per_group = out.groupby("group")["split"].nunique()
    if (per_group > 1).any():
        raise SplitError(f"groups in more than one split: {list(per_group[per_group > 1].index)[:5]}")
    sizes = out["split"].value_counts().reindex(SPLITS, fill_value=0)
    for name in SPLITS:
        if fractions[name] > 0 and sizes[name] == 0:
            raise SplitError(
                f"split {name!r} is empty: fractions {fractions} over {out['group'].nunique()} groups "
                f"and {len(out)} images gave " + ", ".join(f"{s}={sizes[s]}" for s in SPLITS)
                + "; add data, or change split.fractions"
            )
    return out


def split_tiled_images(manifest: pd.DataFrame, fractions: dict[str, float], seed: int) -> tuple[pd.DataFrame, str]:
    """The split of whole images that are cut into tiles, and a sentence saying how it was made.

    Whole groups (slides, patients) go to train, val and test as for crops. With too few groups
    for that (three slides with fractions 0.7/0.15/0.15 give no validation slide), the test split
    still gets whole groups (a share ``fractions['test']`` of them, at least one, chosen by the
    seed) and validation becomes tiles of the training images: column ``val_tile_fraction`` tells
    the tile stage which share of each training image's tiles to hold out. No tile of a test
    group is ever trained on or used for validation."""
    try:
        result = split_manifest(manifest, fractions, seed).assign(val_tile_fraction=0.0)
        return result, f"{manifest['group'].nunique()} groups split whole between train, val and test"
    except SplitError:
        pass
    groups = sorted(manifest["group"].unique())
    if len(groups) < 2:
        raise SplitError(f"all {len(manifest)} images are in one group ({groups[0]!r}): no group can be held out "
                         "for testing. Put each slide or patient in its own folder (dataset.layout.group: folder) "
                         "or set dataset.layout.group_regex so that images of one slide share a group")
    rng = np.random.default_rng(seed)
    n_test = min(len(groups) - 1, max(1, round(fractions["test"] * len(groups))))
    test = {groups[i] for i in rng.permutation(len(groups))[:n_test]}
    out = manifest.copy()
    out["split"] = np.where(out["group"].isin(test), "test", "train")
    kept = fractions["train"] + fractions["val"]
    out["val_tile_fraction"] = np.where(out["split"] == "train", fractions["val"] / kept if kept else 0.0, 0.0)
    note = (f"{len(groups)} groups are too few for a validation group: {n_test} test group(s) "
            f"({', '.join(sorted(test))}), the other {len(groups) - n_test} train, and "
            f"{fractions['val'] / kept if kept else 0:.0%} of the training images' tiles validate")
    return out, note


def run(in_manifest, fractions: dict[str, float], seed: int, out_manifest, tiled: bool = False) -> None:
    """Split the crops (or, ``tiled``, the whole images that the tiles stage cuts) by group."""
    manifest = shards.read_table(in_manifest)
    if manifest.empty:
        raise SplitError(f"{in_manifest}: no images left after {'ingest' if tiled else 'crop_filter'}; nothing to split")
    if tiled:
        result, note = split_tiled_images(manifest, fractions, seed)
        log.info("split: %s", note)
    else:
        result = split_manifest(manifest, fractions, seed)
    shards.write_table(out_manifest, result)
    summary = result.groupby("split").agg(images=("image_id", "size"), groups=("group", "nunique"))
    log.info("split sizes:\n%s", summary.to_string())
