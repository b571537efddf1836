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


def run(in_manifest, fractions: dict[str, float], seed: int, out_manifest) -> None:
    manifest = shards.read_table(in_manifest)
    if manifest.empty:
        raise SplitError(f"{in_manifest}: no images left after crop_filter; nothing to split")
    result = split_manifest(manifest, fractions, seed)
    shards.write_table(out_manifest, result)
    summary = result.groupby("split").agg(images=("image_id", "size"), groups=("group", "nunique"))
    log.info("split sizes:\n%s", summary.to_string())
