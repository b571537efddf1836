"""Every classification backbone on the G-band cell folds: is its default recipe as good as the plain network?

The cell folds of benchmarks/gband_cell_folds.py (same seed, same deal of cells), each backbone
trained on a fold's training cells with the workflow's default recipe (schema defaults: 18 passes,
one-cycle AdamW at 3e-3, label smoothing, mirror images and shifts; and the backbone's own defaults
of karyosr.classify.recipes: its CPU size and the fixes measured here) plus the study's
mirror-image test-time augmentation (``--recipes``: other keys for a backbone, to try a fix), one
process and one thread per training. The table gives accuracy with and without
cell decoding pooled over the folds run, each backbone's difference from ``plain_cnn`` image by
image (paired; 95 % bootstrap over cells), its parameter count, and its training time.

    python benchmarks/gband_backbones.py --workdir DIR/main [--inputs hr lr] [--run-folds 0 1]
        [--backbones plain_cnn resnet18 ...] [--recipes recipes.json] [--name gband_backbones]

Predictions of every (backbone recipe, input, fold) are kept under --cache, keyed by the recipe, so
changing one backbone's recipe retrains only that backbone. Writes
benchmarks/results/<NAME>.{md,json,csv}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import RESULTS, record
from gband_benchmark import CLASSIFIER, PROFILES
from gband_cell_folds import N_BOOT, deal_folds, load_images, run_fold

BACKBONES = ("plain_cnn", "dcnn", "resnet18", "resnet50", "vgg19", "xception", "inception_resnet_v2")
REFERENCE = "plain_cnn"
def recipe_of(backbone: str, recipes: dict) -> dict:
    """The experiment keys a backbone trains with: the workflow's defaults for it
    (karyosr.classify.recipes: its CPU size and measured fixes), mirror-image TTA as the study
    uses, or what --recipes says for it instead."""
    from karyosr.classify.recipes import BACKBONE_DEFAULTS

    return {"backbone": backbone, "tta": CLASSIFIER["tta"], **recipes.get(backbone, BACKBONE_DEFAULTS[backbone])}


def cache_key(recipe: dict, input_name: str, fold: int, seed: int, n_folds: int) -> str:
    text = json.dumps({"recipe": recipe, "input": input_name, "fold": fold, "seed": seed, "folds": n_folds},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_cached(job: dict) -> pd.DataFrame:
    """run_fold, or its predictions from an earlier run with the same recipe, input and fold."""
    path = Path(job["cache"]) / f"{job['key']}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    predictions = run_fold(job).assign(backbone=job["backbone"], recipe=json.dumps(job["recipe"], sort_keys=True))
    predictions.to_parquet(path)
    return predictions


def paired_difference(predictions: pd.DataFrame, column: str, backbone: str, seed: int) -> dict:
    """Accuracy of ``backbone`` minus the reference's on the same test images, with a 95 % bootstrap
    interval over cells (one backbone's images of a cell are not independent of each other)."""
    from karyosr.classify.metrics import bootstrap_ci

    mine = predictions[predictions["backbone"] == backbone].set_index("image_id")
    reference = predictions[predictions["backbone"] == REFERENCE].set_index("image_id").loc[mine.index]
    gap = mine[column].to_numpy(float) - reference[column].to_numpy(float)
    low, high = bootstrap_ci(gap, N_BOOT, seed, clusters=mine["cell"])
    return {"mean": round(float(gap.mean()), 4), "ci_low": round(low, 4), "ci_high": round(high, 4)}


def with_ensembles(runs: pd.DataFrame) -> pd.DataFrame:
    """The backbones' predictions of one input and, beside them, ensembles of them (averaged
    calibrated probabilities, `karyosr.classify.ensemble`): every backbone, and the three most
    accurate; each ensemble's size and time are its members' sums."""
    from karyosr.classify.ensemble import average

    accuracy = (runs["predicted"] == runs["label"]).groupby(runs["backbone"]).mean().sort_values(ascending=False)
    ensembles = {"ensemble of all": list(accuracy.index), "ensemble of the best 3": list(accuracy.index[:3])}
    per_fold = runs.groupby(["backbone", "fold"])["seconds"].first()
    folds = runs.drop_duplicates("image_id").set_index("image_id")["fold"]
    parts = [runs]
    for name, members in ensembles.items():
        if len(members) < 2:
            continue
        mean = average(runs, name, members)
        fold = folds.loc[mean["image_id"]].to_numpy()
        seconds = per_fold.loc[members].groupby("fold").sum()
        parts.append(mean.assign(backbone=name, fold=fold, seconds=seconds.loc[fold].to_numpy(),
                                 recipe=json.dumps({"members": members}),
                                 parameters=int(runs.drop_duplicates("backbone").set_index("backbone")
                                                .loc[members, "parameters"].sum())))
    return pd.concat(parts, ignore_index=True)


def summarise(predictions: pd.DataFrame, seed: int) -> pd.DataFrame:
    """One row per (input, backbone): accuracy and cell-decoded accuracy pooled over the folds run
    (bootstrap over cells), the paired difference from the plain network, size and time."""
    from karyosr.classify.karyotype import decode
    from karyosr.classify.metrics import run_summary
    from karyosr.config import validate

    rows = []
    for input_name, runs in predictions.groupby("experiment", sort=False):
        runs = with_ensembles(runs.assign(experiment=runs["backbone"]).reset_index(drop=True))
        decoded, _ = decode(runs[["image_id", "cell", "label", "predicted", "probabilities", "experiment", "seed"]],
                            validate({})["classify"])
        runs = runs.assign(correct=runs["predicted"] == runs["label"],
                           decoded_correct=decoded["predicted_decoded"].to_numpy() == runs["label"].to_numpy())
        summary = run_summary(decoded, N_BOOT).set_index("experiment")
        for backbone, mine in runs.groupby("backbone", sort=False):
            stat = summary.loc[backbone]
            row = {"input": input_name, "backbone": backbone, "recipe": mine["recipe"].iloc[0],
                   "parameters": int(mine["parameters"].iloc[0]), "images": len(mine), "cells": mine["cell"].nunique(),
                   "train_test_seconds": round(float(mine.groupby("fold")["seconds"].first().mean()), 1)}
            for name, column in (("accuracy", "accuracy"), ("decoded", "accuracy_decoded")):
                row.update({name: stat[column], f"{name}_ci_low": stat[f"{column}_ci_low"],
                            f"{name}_ci_high": stat[f"{column}_ci_high"]})
            if REFERENCE in set(runs["backbone"]) and backbone != REFERENCE:
                for name, column in (("vs_plain", "correct"), ("decoded_vs_plain", "decoded_correct")):
                    diff = paired_difference(runs, column, backbone, seed)
                    row.update({name: diff["mean"], f"{name}_ci_low": diff["ci_low"], f"{name}_ci_high": diff["ci_high"]})
            rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, folds: list[int], n_folds: int, minutes: float) -> str:
    def pct(row, name):
        return f"{100 * row[name]:.1f} % [{100 * row[f'{name}_ci_low']:.1f}, {100 * row[f'{name}_ci_high']:.1f}]"

    def points(row, name):
        if name not in row or pd.isna(row.get(name)):
            return "–"
        return (f"{100 * row[name]:+.1f} [{100 * row[f'{name}_ci_low']:+.1f}, "
                f"{100 * row[f'{name}_ci_high']:+.1f}]")

    lines = ["# G-band classification backbones on the cell folds", "",
             f"Folds {', '.join(map(str, folds))} of the {n_folds} cell folds of gband_cell_folds.py "
             f"({table['cells'].iloc[0]} test cells, {table['images'].iloc[0]} test images); 48 px crops; each backbone "
             "trained on the other cells with the workflow's default recipe and mirror-image TTA, at the size and "
             "with the recipe keys in the 'recipe' column; one thread per training. Intervals: 95 % bootstrap over "
             "cells; 'vs plain_cnn': the difference image by image on the same test images. "
             f"Run: {minutes:.1f} min on 2 cores.", "",
             "| input | backbone | recipe | parameters | accuracy | vs plain_cnn (points) | cell-decoded | "
             "decoded vs plain_cnn | training + test per fold (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, row in table.iterrows():
        lines.append(f"| {row['input']} | {row['backbone']} | `{row['recipe']}` | {row['parameters'] / 1e6:.2f} M | "
                     f"{pct(row, 'accuracy')} | {points(row, 'vs_plain')} | {pct(row, 'decoded')} | "
                     f"{points(row, 'decoded_vs_plain')} | {row['train_test_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a finished main-part run of gband_benchmark.py")
    parser.add_argument("--folds", type=int, default=6, help="the cell folds are dealt as gband_cell_folds.py deals them")
    parser.add_argument("--run-folds", type=int, nargs="+", default=[0, 1], help="which of them to test")
    parser.add_argument("--jobs", type=int, default=2, help="trainings side by side, one core each")
    parser.add_argument("--inputs", nargs="+", default=["hr"], choices=["hr", "lr"])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--recipes", type=Path, help="JSON: backbone -> experiment keys, instead of the CPU sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/karyosr-backbones"))
    parser.add_argument("--name", default="gband_backbones", help="results/<name>.{md,json,csv}")
    args = parser.parse_args()

    recipes = json.loads(args.recipes.read_text()) if args.recipes else {}
    args.cache.mkdir(parents=True, exist_ok=True)
    results = args.workdir / "results"
    sources = {"hr": results / "crop_filter/shards",
               "lr": results / f"classify/inputs/lr-{PROFILES['main']['name']}/shards"}
    backbones = list(dict.fromkeys([REFERENCE, *args.backbones]))
    start = time.perf_counter()
    jobs = []
    for input_name in args.inputs:
        images, labels, cells, ids = load_images(sorted(sources[input_name].glob("*.parquet")),
                                                 results / "split/manifest.parquet")
        folds = deal_folds(cells, args.folds, args.seed)
        for backbone in backbones:
            recipe = recipe_of(backbone, recipes)
            for fold in args.run_folds:
                test_cells, val_cells = folds[fold]
                jobs.append({"input": input_name, "fold": fold, "seed": args.seed, "recipe": recipe,
                             "backbone": backbone, "images": images, "labels": labels, "cells": cells, "ids": ids,
                             "test_cells": test_cells, "val_cells": val_cells, "cache": str(args.cache),
                             "key": cache_key(recipe, input_name, fold, args.seed, args.folds)})
    # slowest first, so the two workers finish together
    jobs.sort(key=lambda job: job["backbone"] in ("plain_cnn", "dcnn", "resnet18"))
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        predictions = pd.concat(pool.map(run_cached, jobs, chunksize=1), ignore_index=True)
    minutes = (time.perf_counter() - start) / 60
    table = summarise(predictions, args.seed)
    table.to_csv(RESULTS / f"{args.name}.csv", index=False)
    (RESULTS / f"{args.name}.md").write_text(markdown(table, args.run_folds, args.folds, minutes))
    record(args.name, {"folds": args.folds, "run_folds": args.run_folds, "minutes": round(minutes, 1),
                       "rows": json.loads(table.to_json(orient="records"))})


if __name__ == "__main__":
    main()
