"""Time of `snakemake -n` for a config whose synthetic dataset would hold 100,000 images.

The DAG depends on the shard count, not on the images, so nothing is generated: this measures
how long Snakemake takes to plan a run of that size.

    python benchmarks/dry_run_100k.py [--shards 64]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import REPO, record

CELLS_FOR_100K = -(-100_000 // 46)  # 46 chromosomes per cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump({"shards": args.shards, "synthetic": {"n_cells": CELLS_FOR_100K}}))
        command = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "workflow/Snakefile"),
                   "--directory", tmp, "--cores", "2", "--configfile", str(config)]
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            times.append(time.perf_counter() - start)
    jobs = int(re.search(r"^total\s+(\d+)", out.stdout, re.M).group(1))
    record(f"dry_run_100k_{args.shards}shards", {
        "images": CELLS_FOR_100K * 46,
        "shards": args.shards,
        "jobs": jobs,
        "seconds_best": round(min(times), 2),
        "seconds_all": [round(t, 2) for t in times],
    })


if __name__ == "__main__":
    main()
