"""Cell-fold cross-validation of the G-band study's classifier: every cell is a test cell once.

The study tests on one draw of cells (15 % of them), and which cells are drawn moves HR accuracy
by several points with the same network: its test split holds the two most condensed cells of the
set. Here the cells of a finished main-part run (benchmarks/gband_benchmark.py) are dealt into
folds; each fold is tested by a classifier trained with the study's recipe on the other cells (a
few of them kept for validation), for HR and for LR x4 inputs, with and without cell decoding.
Accuracy is pooled over all folds with a 95 % bootstrap interval over cells, and so is the
LR-to-HR difference, image by image.

    python benchmarks/gband_cell_folds.py --workdir DIR/main [--folds 6] [--jobs 2] [--inputs hr lr] [--name NAME]

Reads the run's crops, LR images and split groups in place; writes
benchmarks/results/<NAME>.{json,md} (gband_cell_folds by default).
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import RESULTS, record
from gband_benchmark import CLASSIFIER, PROFILES

VAL_CELLS = 3  # enough to pick the best of a one-cycle schedule's last passes
N_BOOT = 2000


def load_images(shard_paths: list[Path], split_manifest: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(images, labels, cells, image ids) of every labelled image in these shards, by image id."""
    from karyosr.classify.inputs import load_split

    splits = [load_split(shard_paths, split_manifest, split) for split in ("train", "val", "test")]
    images, labels, ids = (np.concatenate(part) for part in zip(*splits))
    order = np.argsort(ids)
    groups = pd.read_parquet(split_manifest, columns=["image_id", "group"]).set_index("image_id")["group"]
    return images[order], labels[order], groups.loc[ids[order]].to_numpy(), ids[order]


def deal_folds(cells: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(test cells, validation cells) of each fold: the cells shuffled and dealt into folds; the
    validation cells of a fold are drawn from the other folds."""
    rng = np.random.default_rng(seed)
    unique = rng.permutation(np.unique(cells))
    folds = np.array_split(unique, n_folds)
    return [(test, rng.choice(np.setdiff1d(unique, test), VAL_CELLS, replace=False)) for test in folds]


def run_fold(job: dict) -> pd.DataFrame:
    """Train on a fold's training cells and predict its test cells (one process, one thread)."""
    import torch

    from karyosr.classify import calibration
    from karyosr.classify.predict import infer_logits
    from karyosr.classify.supernet import build_classifier
    from karyosr.classify.train import calibrate, fit_classifier
    from karyosr.config import validate
    from karyosr.engine import seed_everything
    from karyosr.io.images import data_range

    torch.set_num_threads(1)
    images, labels, cells = job["images"], job["labels"], job["cells"]
    test, val = np.isin(cells, job["test_cells"]), np.isin(cells, job["val_cells"])
    train = ~test & ~val
    # job["recipe"]: the experiment keys a caller sets instead of the study's (backbone, its options, ...)
    recipe = job.get("recipe") or {**CLASSIFIER, "epochs": job["epochs"]}
    experiment = validate({"classify": {"experiments": [{**recipe, "name": job["input"], "input": "hr"}]}})
    experiment = {**experiment["classify"]["experiments"][0], "device": "cpu", "bf16": False}
    seed_everything(job["seed"])
    start = time.perf_counter()
    model = build_classifier(experiment, None)
    with tempfile.TemporaryDirectory() as checkpoints:
        fit_classifier(experiment, model, (images[train], labels[train]), (images[val], labels[val]), job["seed"],
                       torch.device("cpu"), checkpoints)
    # calibrated on the validation cells, as rule train_classifier does
    calibrated = calibrate(model, images[val], labels[val], torch.device("cpu"), False, experiment["tta"])
    logits, _ = infer_logits(model, images[test], data_range(images.dtype), torch.device("cpu"), False,
                             experiment["tta"])
    probabilities = calibration.probabilities(logits, calibrated["temperature"])
    seconds = time.perf_counter() - start
    return pd.DataFrame({"image_id": job["ids"][test], "cell": cells[test], "label": labels[test],
                         "predicted": probabilities.argmax(1), "probabilities": list(probabilities),
                         "raw_probabilities": list(calibration.probabilities(logits)),
                         "experiment": job["input"], "seed": job["seed"], "fold": job["fold"], "seconds": seconds,
                         "parameters": sum(p.numel() for p in model.parameters()),
                         **{k: calibrated[k] for k in ("temperature", "val_nll_before", "val_nll_after")}})


def interval(row: pd.Series, metric: str) -> dict:
    return {"mean": round(float(row[metric]), 4), "ci_low": round(float(row[f"{metric}_ci_low"]), 4),
            "ci_high": round(float(row[f"{metric}_ci_high"]), 4)}


def summarise(predictions: pd.DataFrame, seed: int) -> dict:
    """Accuracy with and without cell decoding over all folds (the workflow's run summary: intervals
    from a bootstrap over cells), per fold, and the HR-minus-LR difference image by image."""
    from karyosr.classify.karyotype import decode
    from karyosr.classify.metrics import bootstrap_ci, run_summary
    from karyosr.config import validate

    decoded, _ = decode(predictions[["image_id", "cell", "label", "predicted", "probabilities", "experiment", "seed"]],
                        validate({})["classify"])
    summary = run_summary(decoded, N_BOOT).set_index("experiment")
    predictions = predictions.assign(correct=predictions["predicted"] == predictions["label"],
                                     decoded_correct=decoded["predicted_decoded"] == decoded["label"])
    result = {}
    for name, runs in predictions.groupby("experiment", sort=False):
        folds = runs.groupby("fold").agg(cells=("cell", "nunique"), images=("label", "size"),
                                         seconds=("seconds", "first"), accuracy=("correct", "mean"),
                                         decoded=("decoded_correct", "mean"))
        per_cell = runs.groupby("cell")["correct"].mean()
        result[name] = {"accuracy": interval(summary.loc[name], "accuracy"),
                        "decoded": interval(summary.loc[name], "accuracy_decoded"),
                        "cells_below_90_pct": int((per_cell < 0.9).sum()), "cells": int(per_cell.size),
                        "folds": folds.round(4).reset_index().to_dict(orient="records")}
    if {"hr", "lr"} <= set(result):
        hr = predictions[predictions["experiment"] == "hr"].set_index("image_id")
        lr = predictions[predictions["experiment"] == "lr"].set_index("image_id").loc[hr.index]
        gap = hr["correct"].to_numpy(float) - lr["correct"].to_numpy(float)
        low, high = bootstrap_ci(gap, N_BOOT, seed, clusters=hr["cell"])
        result["hr_minus_lr"] = {"mean": round(float(gap.mean()), 4), "ci_low": round(low, 4),
                                 "ci_high": round(high, 4)}
    return result


def markdown(result: dict, n_folds: int, epochs: int, crop_size: int, minutes: float) -> str:
    def interval(stat: dict) -> str:
        return f"{100 * stat['mean']:.1f} % [{100 * stat['ci_low']:.1f}, {100 * stat['ci_high']:.1f}]"

    lines = ["# G-band classifier, cell-fold cross-validation", "",
             f"{n_folds} folds of cells, every cell tested once by a classifier that never saw it; the study's "
             f"recipe (plain network, {epochs} passes, mirror-image test-time augmentation); {crop_size} px "
             f"crops; intervals: 95 % bootstrap over cells. Run: {minutes:.1f} min on 2 cores.", "",
             "| input | accuracy | cell-decoded accuracy | cells under 90 % | training + test per fold (s) |",
             "|---|---|---|---|---|"]
    for name in ("hr", "lr"):
        if name in result:
            stat = result[name]
            seconds = np.mean([fold["seconds"] for fold in stat["folds"]])
            lines.append(f"| {name} | {interval(stat['accuracy'])} | {interval(stat['decoded'])} | "
                         f"{stat['cells_below_90_pct']} of {stat['cells']} | {seconds:.0f} |")
    if "hr_minus_lr" in result:
        gap = result["hr_minus_lr"]
        lines += ["", f"HR minus LR x4 accuracy, image by image: {100 * gap['mean']:+.1f} points "
                      f"[{100 * gap['ci_low']:+.1f}, {100 * gap['ci_high']:+.1f}]."]
    lines += ["", "| input | fold | cells | images | accuracy | decoded |", "|---|---|---|---|---|---|"]
    for name in ("hr", "lr"):
        for fold in result.get(name, {}).get("folds", []):
            lines.append(f"| {name} | {fold['fold']} | {fold['cells']} | {fold['images']} | "
                         f"{100 * fold['accuracy']:.1f} % | {100 * fold['decoded']:.1f} % |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a finished main-part run of gband_benchmark.py")
    parser.add_argument("--folds", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=2, help="folds trained side by side, one core each")
    parser.add_argument("--inputs", nargs="+", default=["hr", "lr"], choices=["hr", "lr"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=CLASSIFIER["epochs"], help="passes (fewer for a quick check)")
    parser.add_argument("--name", default="gband_cell_folds", help="results/<name>.{md,json}")
    args = parser.parse_args()

    results = args.workdir / "results"
    # LR images as the study's LR classifiers see them: bicubic-upscaled to the crop size.
    sources = {"hr": results / "crop_filter/shards",
               "lr": results / f"classify/inputs/lr-{PROFILES['main']['name']}/shards"}
    start = time.perf_counter()
    jobs = []
    for name in args.inputs:
        images, labels, cells, ids = load_images(sorted(sources[name].glob("*.parquet")), results / "split/manifest.parquet")
        crop_size = images.shape[-1]
        for fold, (test_cells, val_cells) in enumerate(deal_folds(cells, args.folds, args.seed)):
            jobs.append({"input": name, "fold": fold, "seed": args.seed, "epochs": args.epochs, "images": images,
                         "labels": labels, "cells": cells, "ids": ids, "test_cells": test_cells,
                         "val_cells": val_cells})
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        predictions = pd.concat(pool.map(run_fold, jobs, chunksize=1), ignore_index=True)
    minutes = (time.perf_counter() - start) / 60
    result = summarise(predictions, args.seed)
    (RESULTS / f"{args.name}.md").write_text(markdown(result, args.folds, args.epochs, crop_size, minutes))
    record(args.name, {"folds": args.folds, "crop_size": int(crop_size), "classifier": {**CLASSIFIER, "epochs": args.epochs},
                                "minutes": round(minutes, 1), **result})


if __name__ == "__main__":
    main()
