"""Per-job start-up of the workflow's scripts: what a job pays before it does any work.

Every rule runs a script in a fresh interpreter, so the imports at the top of its script are paid
once per job. For each script in ``workflow/scripts/`` this runs the script's import lines (the
top-level ``import``/``from`` statements before its first other statement) in a new interpreter,
several times, and records the median wall time, the peak memory and which heavy libraries they
pulled in - at the committed tree of a given revision, so the layout before and after a change can
be compared on the same machine.

    python benchmarks/job_startup.py [--rev REV] [--repeats 5] [--label NAME]
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, record

HEAVY = ("torch", "cv2", "pandas", "pyarrow", "scipy", "sklearn", "imblearn", "matplotlib")
# Runs the import lines, then prints the wall time they took, the peak RSS and the heavy modules loaded.
PROBE = """import resource, sys, time
start = time.perf_counter()
exec(compile({source!r}, "imports", "exec"))
wall = time.perf_counter() - start
heavy = [name for name in {heavy!r} if name in sys.modules]
print(wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, ",".join(heavy))
"""


def import_lines(script: Path) -> str:
    """The top-level import statements a script runs before anything else."""
    tree = ast.parse(script.read_text())
    lines = []
    for node in tree.body:
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            break
        lines.append(ast.unparse(node))
    return "\n".join(lines)


def measure(tree: Path, repeats: int) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree / "src"), str(tree)]), "OMP_NUM_THREADS": "1"}
    rows = []
    for script in sorted((tree / "workflow/scripts").glob("*.py")):
        probe = PROBE.format(source=import_lines(script), heavy=HEAVY)
        # Interpreter start included: a job pays it too.
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tempfile.gettempdir(),
                                 capture_output=True, text=True)
            total = time.perf_counter() - start
            if out.returncode:
                raise SystemExit(f"{script.name}: {out.stderr[-500:]}")
            imports, rss, heavy = out.stdout.split() + [""] * (3 - len(out.stdout.split()))
            runs.append((total, float(imports), float(rss), heavy))
        rows.append({"script": script.stem, "startup_s": round(statistics.median(r[0] for r in runs), 3),
                     "imports_s": round(statistics.median(r[1] for r in runs), 3),
                     "peak_rss_mb": round(max(r[2] for r in runs)), "heavy_modules": runs[0][3]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--label", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="karyosr-startup-") as tmp:
        archive = subprocess.run(["git", "archive", args.rev], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        rows = measure(Path(tmp), args.repeats)
    rev = subprocess.run(["git", "rev-parse", "--short", args.rev], cwd=REPO, capture_output=True, text=True).stdout.strip()
    torch_free = [r for r in rows if "torch" not in r["heavy_modules"]]
    record(args.label or f"job_startup_{rev}", {
        "rev": rev, "repeats": args.repeats, "scripts": len(rows),
        "median_startup_s": round(statistics.median(r["startup_s"] for r in rows), 3),
        "scripts_without_torch": len(torch_free), "per_script": rows})


if __name__ == "__main__":
    main()
