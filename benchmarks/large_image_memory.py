"""Bounded memory whatever the image size: whole slides of 30,000 px through the whole-image path.

Two slide folders, each with one very large grey image (a mosaic of generated metaphase photos,
30,000 x 8,000 px = 240 Mpx by default, PNG) and one photo-sized image, run through ingest, split by
folder, tiles (detail filter), a x4 profile, the bicubic baseline, metrics, the held-out images
enhanced whole (their central crop within whole.max_pixels) and NIQE/PIQE before and after. For
every job the peak resident memory (Snakemake's benchmark ``max_rss``) is set beside the ``mem_mb``
the rule declared (read from the Snakemake log), per rule the largest of each.

    python benchmarks/large_image_memory.py [--side 30000 8000] [--cores 2] [--collect DIR]

Writes benchmarks/results/large_image_memory.json.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from common import REPO, record

sys.path.insert(0, str(REPO / "src"))
from karyosr.dataset import photos  # noqa: E402


def make_slides(root: Path, height: int, width: int) -> None:
    """Two slide folders, each a mosaic of generated photos at (height, width) and one photo."""
    tile = photos.generate_photos(root / "_parts", {"n_slides": 2, "photos_per_slide": 2, "size": [1024, 1536]}, 11)
    for slide, part in tile.groupby("slide"):
        grey = [cv2.imread(str(root / "_parts" / f), cv2.IMREAD_GRAYSCALE) for f in part["file"]]
        mosaic = np.tile(np.concatenate(grey, axis=1), (height // 1024 + 1, width // (1536 * len(grey)) + 1))
        (root / slide).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / slide / "slide.png"), mosaic[:height, :width])
        cv2.imwrite(str(root / slide / "photo.png"), grey[0])
        del mosaic
    for path in sorted((root / "_parts").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "_parts").rmdir()


def config(raw: Path, max_pixels: int) -> dict:
    return {
        "seed": 0, "shards": 2,
        "dataset": {"name": "large", "source": {"type": "path", "path": str(raw)},
                    "layout": {"type": "images", "group": "folder", "extensions": [".png"]}},
        "ingest": {"max_pixels": max_pixels},
        "tiles": {"size": 128, "max_per_image": 400},
        "split": {"fractions": {"train": 0.5, "val": 0.0, "test": 0.5}},
        "degrade": {"profiles": [{"name": "x4_bicubic", "scale": 4, "kernel": "bicubic"}]},
        "upscale": {"methods": ["bicubic"]},
        "sr": {"profiles": [], "models": []},
        "whole": {"max_pixels": 16_000_000},
        "metrics": {"niqe_patch_size": 32},
        "classify": {"experiments": []},
    }


def declared_memory(workdir: Path) -> pd.DataFrame:
    """rule, job (its benchmark file, as measured_memory names it) and declared mem_mb of every job
    with a benchmark file, from the Snakemake log's job blocks."""
    log = sorted((workdir / ".snakemake/log").glob("*.snakemake.log"))[-1].read_text()
    rows = []
    for block in re.split(r"^(?=(?:local)?rule \w+:)", log, flags=re.M):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        benchmark = re.search(r"benchmark: results/benchmarks/(\S+)\.tsv", block)
        mem = re.search(r"mem_mb=(\d+)", block)
        if rule and benchmark and mem:
            rows.append({"rule": rule.group(1), "job": benchmark.group(1), "declared_mb": int(mem.group(1))})
    return pd.DataFrame(rows, columns=["rule", "job", "declared_mb"])


def measured_memory(workdir: Path) -> pd.DataFrame:
    root = workdir / "results/benchmarks"
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        rows.append({"job": str(path.relative_to(root).with_suffix("")), "seconds": float(table["s"].iloc[0]),
                     "max_rss_mb": float(table["max_rss"].iloc[0])})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, nargs=2, default=[30000, 8000], metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--collect", type=Path, help="only read a finished run in this folder")
    args = parser.parse_args()
    width, height = args.side
    wall = None
    if args.collect:
        work = args.collect
    else:
        work = Path(tempfile.mkdtemp(prefix="karyosr-large-"))
        make_slides(work / "raw", height, width)
        (work / "config.yaml").write_text(yaml.safe_dump(config(work / "raw", width * height + 1)))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow/Snakefile"),
                        "--directory", str(work), "--configfile", str(work / "config.yaml"),
                        "--cores", str(args.cores)], check=True, capture_output=True)
        wall = time.perf_counter() - start
    jobs = measured_memory(work).merge(declared_memory(work), on="job", how="left")
    if jobs["declared_mb"].isna().all():
        sys.exit(f"{work}: no job's declared mem_mb found in the Snakemake log; nothing to compare")
    rules = jobs.dropna(subset=["declared_mb"]).groupby("rule").agg(
        jobs=("job", "size"), seconds=("seconds", "sum"), peak_rss_mb=("max_rss_mb", "max"),
        declared_mb=("declared_mb", "max"), smallest_headroom_mb=("declared_mb", "min")).reset_index()
    within = jobs.dropna(subset=["declared_mb"])
    rules["smallest_headroom_mb"] = rules["rule"].map(
        (within["declared_mb"] - within["max_rss_mb"]).groupby(within["rule"]).min())
    tiles = pd.read_parquet(work / "results/tiles/images.parquet")
    record("large_image_memory", {
        "images": f"2 slides of {width} x {height} px ({width * height / 1e6:.0f} Mpx, PNG) and 2 photos of 1536 x 1024",
        "workdir": str(work), "wall_seconds": None if wall is None else round(wall, 1),
        "tiles": tiles[["source", "height", "width", "tiles", "kept", "flat"]].to_dict("records"),
        "per_rule": rules.round(1).to_dict("records"),
        "jobs_without_declared_memory": sorted(jobs.loc[jobs["declared_mb"].isna(), "job"]),
        "every_job_within_declared": bool((within["max_rss_mb"] <= within["declared_mb"]).all()),
    })


if __name__ == "__main__":
    main()
