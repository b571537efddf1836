"""The default pipeline (config/config.yaml, the embedded synthetic data) end to end from a clean
copy of the checkout: wall time, number of jobs, job time per stage, the slowest jobs, the
classifiers' accuracy, and Snakemake's own CPU time (scheduling and job start-up bookkeeping) -
the figures behind the README's run time and the demo's time budget.

    python benchmarks/default_run.py [--cores 2] [--label NAME] [--collect DIR] [--worktree]

``--collect DIR`` only reads a finished run in DIR (timings from the rule benchmark files and its
Snakemake log); otherwise the committed tree (``git archive HEAD``), or with ``--worktree`` the
working tree as it is (uncommitted edits measured before they are committed), is copied to a
temporary folder and run there with ``snakemake --cores N``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from common import REPO, record

# Snakemake in a process that reports its own CPU time when it exits (its jobs are child
# processes, so this is the scheduler's share).
OWN_CPU = ("import atexit, resource, sys\n"
           "atexit.register(lambda: print('SNAKEMAKE_CPU', sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),"
           " file=sys.stderr))\n"
           "from snakemake.cli import main\n"
           "sys.argv = ['snakemake'] + sys.argv[1:]\n"
           "main()\n")


def tree_archive(worktree: bool) -> bytes:
    """A tar of the committed tree, or of the working tree's tracked and untracked, not ignored files."""
    if not worktree:
        return subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True).stdout
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout
    # Tracked files deleted in the working tree are listed too: they are skipped, as they are gone.
    return subprocess.run(["tar", "-c", "--null", "--ignore-failed-read", "-T", "-"], cwd=REPO, input=names,
                          capture_output=True, check=True).stdout


def job_times(workdir: Path) -> pd.DataFrame:
    """One row per job with a benchmark file: stage (the folder under results/benchmarks), job, seconds."""
    root = workdir / "results/benchmarks"
    rows = [{"stage": Path(path.relative_to(root).parts[0]).stem, "job": str(path.relative_to(root).with_suffix("")),
             "seconds": float(pd.read_csv(path, sep="\t")["s"].iloc[0])} for path in sorted(root.rglob("*.tsv"))]
    return pd.DataFrame(rows)


def logged_run(workdir: Path) -> tuple[int, float]:
    """(jobs finished, wall seconds) from the last Snakemake log of a run."""
    log = sorted((workdir / ".snakemake/log").glob("*.snakemake.log"))[-1]
    start = time.mktime(time.strptime(log.name.split(".")[0], "%Y-%m-%dT%H%M%S"))
    return log.read_text().count("Finished jobid"), log.stat().st_mtime - start


def summarise(workdir: Path, wall: float | None, snakemake_cpu: float | None, label: str) -> dict:
    times = job_times(workdir)
    jobs, logged_wall = logged_run(workdir)
    over = pd.read_parquet(workdir / "results/classify/summary/over_seeds.parquet")
    columns = ["experiment", "accuracy_mean"] + (["accuracy_decoded_mean"] if "accuracy_decoded_mean" in over else [])
    return {
        "label": label, "wall_seconds": round(wall or logged_wall, 1), "jobs": jobs,
        "snakemake_cpu_seconds": None if snakemake_cpu is None else round(snakemake_cpu, 1),
        "job_seconds_total": round(float(times["seconds"].sum()), 1),
        "job_seconds_per_stage": times.groupby("stage")["seconds"].sum().round(1).sort_values(ascending=False).to_dict(),
        "slowest_jobs": times.nlargest(8, "seconds").round(1).to_dict(orient="records"),
        "classification": over[columns].round(4).to_dict(orient="records"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="2")
    parser.add_argument("--label", default="default_run")
    parser.add_argument("--collect", type=Path, help="summarise a finished run in this folder instead of running")
    parser.add_argument("--keep", type=Path, help="run in this (new) folder and keep it, instead of a temporary one")
    parser.add_argument("--worktree", action="store_true",
                        help="run the working tree as it is instead of the committed tree")
    args = parser.parse_args()
    if args.collect:
        record(args.label, summarise(args.collect, None, None, args.label))
        return
    with tempfile.TemporaryDirectory(prefix="karyosr-default-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=args.keep is None)
        subprocess.run(["tar", "-x", "-C", str(work)], input=tree_archive(args.worktree), check=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", OWN_CPU, "--cores", args.cores], cwd=work, text=True,
                              stderr=subprocess.PIPE)
        wall = time.perf_counter() - start
        if done.returncode:
            sys.exit(done.stderr[-3000:])
        own = [line for line in done.stderr.splitlines() if line.startswith("SNAKEMAKE_CPU")]
        # The machine record names HEAD's commit; a working-tree run holds edits on top of it.
        tree = "working tree (uncommitted edits on the commit)" if args.worktree else "commit"
        record(args.label, {**summarise(work, wall, float(own[-1].split()[1]) if own else None, args.label),
                            "tree": tree})


if __name__ == "__main__":
    main()
