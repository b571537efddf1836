"""Running the workflow from tests: a tiny config in a temporary working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

TINY_CONFIG = {
    "seed": 0,
    "shards": 2,
    "dataset": {"name": "tiny", "source": {"type": "synthetic"}, "layout": {"type": "bioimlab"}},
    "synthetic": {"n_cells": 8, "chr1_length_px": 40, "width_px": 6},
    "crop_filter": {"target_size": 48},
    "split": {"fractions": {"train": 0.5, "val": 0.25, "test": 0.25}},
    "degrade": {
        "profiles": [
            {"name": "x4_bicubic", "scale": 4, "kernel": "bicubic"},
            {"name": "x2_noise", "scale": 2, "kernel": "area", "noise": "gaussian", "noise_sigma": [1, 4]},
        ]
    },
    "upscale": {"methods": ["nearest", "bicubic"]},
    "sr": {
        "profiles": ["x4_bicubic"],
        "models": [
            {"name": "srresnet", "arch": "srresnet", "options": {"num_block": 2, "num_feat": 16,
             "bicubic_residual": True}, "epochs": 3, "steps_per_epoch": 30, "patch_size": 32, "lr": 0.001},
        ],
    },
    "classify": {
        "seeds": [0, 1],
        "bootstrap": 200,
        "experiments": [
            {"name": "dcnn_hr", "input": "hr", "backbone": "dcnn", "backbone_options": {"width": 0.25},
             "epochs": 2, "steps_per_epoch": 10, "batch_size": 16},
            {"name": "super_dcnn", "input": "super:srcnn:x4_bicubic", "backbone": "dcnn",
             "backbone_options": {"width": 0.25}, "sr_options": {"channels": [8, 4]}, "balance": "class_weight",
             "epochs": 2, "steps_per_epoch": 10, "batch_size": 16},
        ],
        "ensembles": [{"name": "both", "members": ["dcnn_hr", "super_dcnn"]}],
    },
    "report": {"title": "tiny test run", "sample_images": 2},
}


def write_config(workdir: Path, config: dict, name: str = "config.yaml") -> Path:
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run this checkout's workflow with workdir as the working directory."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow/Snakefile"),
               "--directory", str(workdir), "--cores", "2", *args]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


REQUIRE_SERVICES = os.environ.get("KARYOSR_REQUIRE_SERVICES") == "1"
"""Set by .ci/run: a service a test needs (Slurm, headless Chromium) that is missing fails the
test instead of skipping it, so CI cannot pass by skipping."""


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason`` on a developer's machine; fail with it where services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (KARYOSR_REQUIRE_SERVICES=1: CI requires this service)", pytrace=False)
    pytest.skip(reason)
