"""Preprocessing throughput: karyosr's ingest -> crop_filter -> split -> degrade against a bare
OpenCV loop that only decodes, crops and resizes the same images, in the same run.

    python benchmarks/preprocess_throughput.py [--dataset gband|synthetic] [--repeats 3]

Both sides run single-process over the same files; the ratio (karyosr time / bare time) is the
cost of everything the stages add: hashing, labels, quarantine checks, detail scores, Parquet
shards, the split, per-image seeded degradation.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from common import GBAND, REPO, record
from karyosr import config as config_module
from karyosr.dataset import crop_filter, degrade, ingest, split, synthetic
from karyosr.io import shards


def stage_pipeline(root: Path, cfg: dict, work: Path) -> int:
    """The package's stage functions with their real I/O, shard by shard."""
    n_shards, layout = cfg["shards"], cfg["dataset"]["layout"]
    ingest.run_inventory(root, cfg["dataset"]["name"], layout, n_shards, work / "inventory.parquet")
    for shard in range(n_shards):
        ingest.run(root, work / "inventory.parquet", layout, shard, n_shards, cfg["ingest"]["max_pixels"],
                   work / f"ingest/{shard}.parquet", work / f"ingest/rej{shard}.parquet")
        crop_filter.run(work / f"ingest/{shard}.parquet", cfg["crop_filter"], work / f"crop/{shard}.parquet",
                        work / f"crop/rej{shard}.parquet")
    crop_paths = [work / f"crop/{s}.parquet" for s in range(n_shards)]
    shards.write_table(work / "crop/manifest.parquet", shards.build_manifest(crop_paths, work / "crop/manifest.parquet"))
    split.run(work / "crop/manifest.parquet", cfg["split"]["fractions"], cfg["seed"], work / "split.parquet")
    profile = cfg["degrade"]["profiles"][0]
    for shard in range(n_shards):
        degrade.run(work / f"crop/{shard}.parquet", work / "split.parquet", profile["name"], profile, cfg["seed"],
                    work / f"lr/{shard}.parquet")
    return sum(len(shards.read_shard_meta(work / f"lr/{s}.parquet")) for s in range(n_shards))


def bare_loop(files: list[Path], target: int, scale: int) -> int:
    """Decode, crop to the Otsu foreground box, pad/resize to the target, downscale."""
    done = 0
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        _, mask = cv2.threshold(image, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
        x, y, w, h = cv2.boundingRect(mask)
        crop = image[y : y + h, x : x + w]
        factor = min(1.0, target / max(crop.shape))
        if factor < 1.0:
            crop = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        square = np.full((target, target), 255, np.uint8)
        square[: crop.shape[0], : crop.shape[1]] = crop
        cv2.resize(square, (target // scale, target // scale), interpolation=cv2.INTER_CUBIC)
        done += 1
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["gband", "synthetic"], default="gband" if GBAND.is_dir() else "synthetic")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.dataset == "gband":
            import yaml
            cfg = yaml.safe_load((REPO / "config/gband.yaml").read_text())
            root = GBAND
        else:
            cfg = {"dataset": {"name": "synthetic"}, "synthetic": {"n_cells": 60}}
            root = tmp / "raw"
            synthetic.generate(root, {"n_cells": 60}, seed=0)
        cfg = config_module.validate(copy.deepcopy(cfg))
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".tif", ".tiff", ".bmp", ".png"))

        timings = {"karyosr": [], "bare_opencv": []}
        for repeat in range(args.repeats):
            work = tmp / f"run{repeat}"
            start = time.perf_counter()
            n_stage = stage_pipeline(root, cfg, work)
            timings["karyosr"].append(time.perf_counter() - start)
            start = time.perf_counter()
            n_bare = bare_loop(files, cfg["crop_filter"]["target_size"], cfg["degrade"]["profiles"][0]["scale"])
            timings["bare_opencv"].append(time.perf_counter() - start)

    best = {k: min(v) for k, v in timings.items()}
    record(f"preprocess_throughput_{args.dataset}", {
        "dataset": args.dataset,
        "images": len(files),
        "images_out": n_stage,
        "bare_images": n_bare,
        "shards": cfg["shards"],
        "seconds_best_of_repeats": best,
        "images_per_s": {k: round(len(files) / v, 1) for k, v in best.items()},
        "ratio_karyosr_over_bare": round(best["karyosr"] / best["bare_opencv"], 2),
        "repeats": args.repeats,
    })


if __name__ == "__main__":
    main()
