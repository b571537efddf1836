"""The shared G-band chromosomes end to end: every SR model at x4 and the classification
experiments (HR, LR, SR two-stage, Super-network; with and without SMOTE; 3 seeds), on whatever
device the machine has. Writes the SR and classification tables to benchmarks/results/.

    python benchmarks/gband_benchmark.py [--workdir DIR] [--cores 2]

The data (../shared/data/gband-chromosomes/DataNew) is read in place, never copied into the
repository. Model sizes and training lengths are set for a 2-core CPU run (see SR_MODELS and BACKBONE);
on a GPU raise `options` and `epochs` towards the published sizes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from common import GBAND, REPO, RESULTS, record

# Sized for a 2-core CPU run of about an hour and a half at 96 px crops (LR 24 px at x4): published
# SRCNN and SRFBN-S, a half-depth SRResNet, a light RRDBNet, a quarter-width ResNet-18; a GPU
# run can raise these to the published sizes and lengths.
CROP_SIZE = 96
SRRESNET = {"num_blocks": 8, "num_features": 64, "bicubic_residual": True}  # shared by srresnet and srgan
RRDBNET = {"num_feat": 32, "num_block": 4, "num_grow_ch": 16}  # shared by rrdb and esrgan
SR_MODELS = [
    {"name": "srcnn", "arch": "srcnn", "epochs": 10, "steps_per_epoch": 100, "lr": 0.001},
    {"name": "srresnet", "arch": "srresnet", "options": SRRESNET,
     "epochs": 10, "steps_per_epoch": 100, "lr": 0.0005},
    {"name": "srgan", "arch": "srresnet", "options": SRRESNET, "init_from_model": "srresnet",
     "pixel_loss": "mse", "perceptual_weight": 1.0, "gan": {"type": "vanilla", "weight": 0.001},
     "epochs": 4, "steps_per_epoch": 100, "lr": 0.0001, "select_by": "val_ssim"},
    {"name": "rrdb", "arch": "esrgan", "options": RRDBNET,
     "epochs": 10, "steps_per_epoch": 100, "lr": 0.0005},
    {"name": "esrgan", "arch": "esrgan", "options": RRDBNET,
     "init_from_model": "rrdb", "pixel_weight": 0.01, "perceptual_weight": 1.0, "gan": {"type": "ragan", "weight": 0.005},
     "epochs": 4, "steps_per_epoch": 100, "lr": 0.0001, "select_by": "val_ssim"},
    {"name": "srfbn", "arch": "srfbn", "options": {"num_features": 32, "num_groups": 3, "num_steps": 4},
     "epochs": 10, "steps_per_epoch": 100, "lr": 0.0005},
    {"name": "unet_sharpen", "arch": "unet_sharpen", "options": {"base_channels": 32, "depth": 3},
     "epochs": 10, "steps_per_epoch": 100, "lr": 0.0005},
]
BACKBONE = {"backbone": "resnet18", "backbone_options": {"width": 0.25}, "epochs": 30, "steps_per_epoch": 25,
            "batch_size": 32, "patience": 6, "lr_patience": 2, "sr_options": {"channels": [32, 16]}}
INPUTS = {"hr": "hr", "lr": "lr:x4_bicubic", "sr": "sr:srresnet:x4_bicubic", "super": "super:srcnn:x4_bicubic"}


def config(classification: bool = True) -> dict:
    base = yaml.safe_load((REPO / "config/gband.yaml").read_text())
    base["dataset"]["source"]["path"] = str(GBAND)
    base["crop_filter"]["target_size"] = CROP_SIZE
    base["degrade"] = {"profiles": [{"name": "x4_bicubic", "scale": 4, "kernel": "bicubic"}]}
    base["sr"] = {"profiles": ["x4_bicubic"], "models": SR_MODELS}
    experiments = [{"name": f"resnet18_{name}_{balance}", "input": source, "balance": balance, **BACKBONE}
                   for name, source in INPUTS.items() for balance in ("smote", "none")]
    base["classify"] = {"seeds": [0, 1, 2], "experiments": experiments if classification else []}
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/karyosr-gband"))
    parser.add_argument("--cores", default="all")
    parser.add_argument("--sr-only", action="store_true", help="skip the classification experiments")
    args = parser.parse_args()
    if not GBAND.is_dir():
        sys.exit(f"G-band data not found at {GBAND}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    config_path = args.workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config(not args.sr_only), sort_keys=False))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                    str(args.workdir), "--cores", args.cores, "--configfile", str(config_path), "--rerun-incomplete"], check=True)
    seconds = time.perf_counter() - start

    report = args.workdir / "results/report"
    sr = pd.read_parquet(report / "tables/sr_methods.parquet")
    columns = ["method", "psnr_mean", "ssim_mean", "psnr_fg_mean", "ssim_fg_mean", "mse_mean", "niqe_mean",
               "piqe_mean", "psnr_gain_pct", "ssim_gain_pct", "n_images"]
    sr = sr[sr["profile"] == "x4_bicubic"][columns]
    RESULTS.mkdir(parents=True, exist_ok=True)
    sr.to_csv(RESULTS / "gband_sr_x4.csv", index=False)
    classification = pd.DataFrame()
    if not args.sr_only:
        classification = pd.read_parquet(report / "tables/classification.parquet")
        classification.to_csv(RESULTS / "gband_classification.csv", index=False)
        pd.read_parquet(report / "tables/per_class.parquet").to_csv(RESULTS / "gband_per_class.csv", index=False)
    shutil.copy(report / "summary.md", RESULTS / "gband_report_summary.md")
    device = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.get_device_name() "
                             "if torch.cuda.is_available() else 'cpu')"], capture_output=True, text=True).stdout.strip()
    record("gband_benchmark", {"device": device, "seconds": round(seconds), "images": 2806,
                               "sr_x4": sr.round(4).to_dict(orient="records"),
                               "classification": classification.round(4).to_dict(orient="records")})


if __name__ == "__main__":
    main()
