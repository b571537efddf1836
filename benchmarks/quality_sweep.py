"""NIQE and PIQE against known degradations: do the no-reference scores rise with Gaussian blur
and with Gaussian noise on chromosome crops?

    python benchmarks/quality_sweep.py [--source run|synthetic] [--images 50] [--patch-size 32]

HR images: the test split of the default run (results/crop_filter/shards/*.parquet with
results/split/manifest.parquet), or, with --source synthetic (the default when there is no run),
a synthetic dataset put through karyosr's ingest -> crop_filter -> split here. The NIQE pristine
model is fitted on the HR *training* images (as the workflow's fit_niqe rule does); the scored
images are a seeded sample of test images, so the model never saw them.

Each test image is degraded once per level and stored as the HR dtype (float -> clip -> round),
as a degraded 8-bit image would be: Gaussian blur (cv2.GaussianBlur, reflected borders) with
sigma in 0, 0.5, 1, 1.5, 2, 3 px, and additive Gaussian noise with sigma in 0, 2.5, 5, 10, 20
grey levels (per-image seeded). Sigma 0 is the HR image itself. Both scores are lower-is-better,
so a sweep is monotonic when the mean score rises at every step.

Writes benchmarks/results/quality_sweep.json (record()) and quality_sweep.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from common import REPO, RESULTS, record
from karyosr import config as config_module
from karyosr.dataset import crop_filter, ingest, split, synthetic
from karyosr.io import shards
from karyosr.quality import niqe, piqe

BLUR_SIGMAS = [0, 0.5, 1, 1.5, 2, 3]
NOISE_SIGMAS = [0, 2.5, 5, 10, 20]


def run_images(results: Path) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(train HR images, test HR images, test image ids) of a finished run."""
    manifest = shards.read_table(results / "split/manifest.parquet", columns=["image_id", "split"])
    which = dict(zip(manifest["image_id"], manifest["split"]))
    train, test, test_ids = [], [], []
    for path in sorted((results / "crop_filter/shards").glob("*.parquet")):
        meta, images = shards.read_shard(path)
        for image_id, image in zip(meta["image_id"], images):
            if which.get(image_id) == "train":
                train.append(image)
            elif which.get(image_id) == "test":
                test.append(image)
                test_ids.append(image_id)
    return train, test, test_ids


def synthetic_images(work: Path, n_cells: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Generate a synthetic dataset and run the preprocessing stages on it, then as run_images."""
    cfg = config_module.validate({"seed": seed, "dataset": {"name": "synthetic"}, "synthetic": {"n_cells": n_cells}})
    synthetic.generate(work / "raw", cfg["synthetic"], seed=seed)
    n_shards, layout = cfg["shards"], cfg["dataset"]["layout"]
    ingest.run_inventory(work / "raw", "synthetic", layout, n_shards, work / "inventory.parquet")
    for shard in range(n_shards):
        ingest.run(work / "raw", work / "inventory.parquet", layout, shard, n_shards, cfg["ingest"]["max_pixels"],
                   work / f"ingest/{shard:03d}.parquet", work / f"ingest/rejected{shard:03d}.parquet")
        crop_filter.run(work / f"ingest/{shard:03d}.parquet", cfg["crop_filter"],
                        work / f"crop_filter/shards/{shard:03d}.parquet", work / f"crop_filter/rej{shard:03d}.parquet")
    crop_paths = [work / f"crop_filter/shards/{s:03d}.parquet" for s in range(n_shards)]
    shards.write_table(work / "crop_filter/manifest.parquet",
                       shards.build_manifest(crop_paths, work / "crop_filter/manifest.parquet"))
    split.run(work / "crop_filter/manifest.parquet", cfg["split"]["fractions"], cfg["seed"],
              work / "split/manifest.parquet")
    return run_images(work)


def as_dtype(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(image), info.min, info.max).astype(dtype)
    return image.astype(dtype)


def blur(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    if sigma == 0:
        return image.copy()
    out = cv2.GaussianBlur(image.astype(np.float64), (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    return as_dtype(out, image.dtype)


def noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    if sigma == 0:
        return image.copy()
    scale = 257.0 if image.dtype == np.uint16 else 1.0  # sigma is in 8-bit grey levels
    out = image.astype(np.float64) + rng.normal(0.0, sigma * scale, image.shape)
    return as_dtype(out, image.dtype)


def score_level(images, degrade, sigma, seeds, pristine, patch_size) -> tuple[dict, np.ndarray, np.ndarray]:
    """Summary row of one level, and the per-image NIQE (NaN where unscorable) and PIQE."""
    niqe_values, details = [], []
    for image, seed in zip(images, seeds):
        degraded = degrade(image, sigma, np.random.default_rng(seed))
        try:
            niqe_values.append(niqe.niqe(degraded, *pristine, patch_size=patch_size))
        except ValueError:
            niqe_values.append(np.nan)
        details.append(piqe.piqe_details(degraded))
    per_niqe = np.array(niqe_values)
    per_piqe = np.array([d.score for d in details])
    n = per_niqe[np.isfinite(per_niqe)]
    row = {
        "sigma": sigma,
        "niqe_mean": round(float(n.mean()), 3) if n.size else None,
        "niqe_std": round(float(n.std(ddof=1)), 3) if n.size > 1 else None,
        "niqe_median": round(float(np.median(n)), 3) if n.size else None,
        "niqe_n": int(n.size),
        "niqe_unscorable": int(per_niqe.size - n.size),
        "piqe_mean": round(float(per_piqe.mean()), 3),
        "piqe_std": round(float(per_piqe.std(ddof=1)), 3) if per_piqe.size > 1 else None,
        "piqe_median": round(float(np.median(per_piqe)), 3),
        "piqe_n": int(per_piqe.size),
        # PIQE's mechanics: how many 16x16 blocks count, and why (means per image)
        "piqe_blocks": round(float(np.mean([d.n_blocks for d in details])), 2),
        "piqe_active_blocks": round(float(np.mean([d.n_active for d in details])), 2),
        "piqe_noticeable_blocks": round(float(np.mean([d.n_noticeable for d in details])), 2),
        "piqe_noise_blocks": round(float(np.mean([d.n_noise for d in details])), 2),
    }
    return row, per_niqe, per_piqe


def sweep(images, degrade, sigmas, seeds, pristine, patch_size) -> list[dict]:
    """Rows of a sweep; each row from the second on also has the share of images whose score
    rose from the previous level (paired, same image and seed)."""
    rows, previous = [], None
    for sigma in sigmas:
        row, per_niqe, per_piqe = score_level(images, degrade, sigma, seeds, pristine, patch_size)
        if previous is not None:
            both = np.isfinite(per_niqe) & np.isfinite(previous[0])
            row["niqe_share_rose"] = round(float((per_niqe[both] > previous[0][both]).mean()), 3) if both.any() else None
            row["piqe_share_rose"] = round(float((per_piqe > previous[1]).mean()), 3)
        rows.append(row)
        previous = (per_niqe, per_piqe)
    return rows


def monotonic(rows: list[dict], key: str) -> dict:
    values = [r[key] for r in rows]
    steps = np.diff(np.array(values, dtype=float))
    return {
        "increasing": bool((steps > 0).all()),
        "non_decreasing": bool((steps >= 0).all()),
        "steps": [round(float(s), 3) for s in steps],
    }


def markdown(result: dict) -> str:
    lines = [
        "# NIQE and PIQE on a blur / noise sweep",
        "",
        f"{result['n_images']} HR test images ({result['source']}, {result['image_size']} px, {result['dtype']}); "
        f"NIQE pristine model fitted on {result['n_train_images']} HR training images, patch {result['patch_size']}. "
        "Mean ± standard deviation over the images; 'rose' = share of images whose score went up from the "
        "previous level (same image, same noise seed). Both scores are lower-is-better, so both should rise "
        "down a sweep. PIQE blocks: mean number of 16×16 blocks per image that are spatially active / "
        "have noticeable distortion / count as noisy. Written by `benchmarks/quality_sweep.py`.",
        "",
    ]

    def share(value):
        return "" if value is None else f"{100 * value:.0f} %"

    def verdict(m):
        if m["increasing"]:
            return "rises at every step"
        if m["non_decreasing"]:
            return "never falls (ties where it saturates)"
        return "not monotonic (steps " + ", ".join(f"{s:+g}" for s in m["steps"]) + ")"

    for name, label in (("blur", "blur σ (px)"), ("noise", "noise σ (grey levels)")):
        rows = result["sweeps"][name]
        lines += [f"| {label} | NIQE | NIQE rose | PIQE | PIQE rose | PIQE blocks active / noticeable / noisy |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            nq = f"{r['niqe_mean']:.2f} ± {r['niqe_std']:.2f}" if r["niqe_mean"] is not None else "–"
            if r["niqe_unscorable"]:
                nq += f" ({r['niqe_unscorable']} unscorable)"
            blocks = f"{r['piqe_active_blocks']:.1f} / {r['piqe_noticeable_blocks']:.1f} / {r['piqe_noise_blocks']:.1f}"
            lines.append(f"| {r['sigma']:g} | {nq} | {share(r.get('niqe_share_rose'))} | "
                         f"{r['piqe_mean']:.2f} ± {r['piqe_std']:.2f} | {share(r.get('piqe_share_rose'))} | {blocks} |")
        mono = result["monotonic"][name]
        lines += ["", f"{name}: NIQE {verdict(mono['niqe'])}; PIQE {verdict(mono['piqe'])}.", ""]
    lines.append(f"Machine: {result['machine']['cores']} cores, commit {result['machine']['commit']}; "
                 f"{result['seconds']:.1f} s in all.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_results = REPO / "results"
    have_run = (default_results / "split/manifest.parquet").is_file()
    parser.add_argument("--source", choices=["run", "synthetic"], default="run" if have_run else "synthetic")
    parser.add_argument("--results", type=Path, default=default_results, help="results folder of a finished run")
    parser.add_argument("--images", type=int, default=50, help="test images scored per level")
    parser.add_argument("--patch-size", type=int, default=32)
    parser.add_argument("--sharpness-threshold", type=float, default=0.75)
    parser.add_argument("--n-cells", type=int, default=24, help="synthetic source: metaphase cells generated")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.source == "run":
            train, test, test_ids = run_images(args.results)
        else:
            train, test, test_ids = synthetic_images(Path(tmp), args.n_cells, args.seed)
    if len(test) < 2 or len(train) < 2:
        raise SystemExit(f"too few images: {len(train)} train, {len(test)} test")
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(len(test), size=min(args.images, len(test)), replace=False))
    images = [test[i] for i in pick]
    seeds = rng.integers(0, 2**32, size=len(images))

    fit_start = time.perf_counter()
    pristine = niqe.fit_pristine(train, patch_size=args.patch_size, sharpness_threshold=args.sharpness_threshold)
    fit_seconds = time.perf_counter() - fit_start

    sweeps = {
        "blur": sweep(images, blur, BLUR_SIGMAS, seeds, pristine, args.patch_size),
        "noise": sweep(images, noise, NOISE_SIGMAS, seeds, pristine, args.patch_size),
    }
    result = {
        "source": "default run (results/crop_filter, test split)" if args.source == "run" else
                  f"synthetic ({args.n_cells} cells, seed {args.seed}) through ingest/crop_filter/split",
        "n_images": len(images),
        "n_test_available": len(test),
        "n_train_images": len(train),
        "image_ids": [test_ids[i] for i in pick],
        "image_size": "x".join(str(s) for s in pd.Series([im.shape for im in images]).mode()[0]),
        "dtype": str(images[0].dtype),
        "patch_size": args.patch_size,
        "sharpness_threshold": args.sharpness_threshold,
        "seed": args.seed,
        "degradation": {
            "blur": "cv2.GaussianBlur(sigmaX=sigma, kernel from sigma, BORDER_REFLECT), clip+round to the HR dtype",
            "noise": "additive N(0, sigma^2) in 8-bit grey levels, per-image seed, clip+round to the HR dtype",
        },
        "sweeps": sweeps,
        "monotonic": {name: {"niqe": monotonic(rows, "niqe_mean"), "piqe": monotonic(rows, "piqe_mean")}
                      for name, rows in sweeps.items()},
        "fit_seconds": round(fit_seconds, 2),
        "seconds": round(time.perf_counter() - start, 2),
    }
    path = record("quality_sweep", result)
    (RESULTS / "quality_sweep.md").write_text(markdown(json.loads(path.read_text())))
    print((RESULTS / "quality_sweep.md").read_text())


if __name__ == "__main__":
    main()
