"""The shared G-band chromosomes end to end through the workflow, by config only: every SR model
at x4 (MATLAB bicubic) and the classification study (HR, LR, SR two-stage and super-network
inputs, each with and without SMOTE, 3 seeds, with and without cell decoding), then a harder
degradation (x4 with blur and noise) where the LR-to-HR gap is large enough to measure what SR
buys. Writes the tables and the time of every model to benchmarks/results/.

    python benchmarks/gband_benchmark.py [--workdir DIR] [--cores 2] [--part main|harder|both]
        [--sizes cpu|published] [--collect-only]

The data (../shared/data/gband-chromosomes/DataNew) is read in place, never copied into the
repository. With `--sizes cpu` (the default) sizes and lengths are set so the whole study runs in
well under 90 minutes on a 2-core CPU. `--sizes published` is the study for a GPU: 16-block
SRResNet and 23-block RRDBNet at 64 channels, ResNet-50, Xception and Inception-ResNet-v2
classifiers at full width, bf16 autocast on CUDA, one seed; its results carry the suffix
`_published` and the device's name.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from common import GBAND, REPO, RESULTS, record
from karyosr.classify.metrics import sex_call_summary
from karyosr.labels import N_CLASSES
from karyosr.report.findings import flag_summary, sex_call_sentence
from karyosr.report.tables import percent_text

CROP_SIZE = 48
PROFILES = {
    "main": {"name": "x4_bicubic", "scale": 4, "kernel": "bicubic"},
    "harder": {"name": "x4_blur_noise", "scale": 4, "kernel": "bicubic", "blur_sigma": [0.8, 1.6],
               "noise": "gaussian", "noise_sigma": [2, 8]},
}
# SR recipes for 12 px LR inputs on a 2-core CPU, about a minute each (benchmarks/README.md says
# why): inputs centred on the training images' mean grey (input_shift auto), a bicubic skip on
# every network that has none (named as variants), warm-up then cosine annealing, whole 48 px
# crops as patches.
CENTRED = {"input_shift": "auto"}
MSRRESNET = {"num_block": 8, "num_feat": 48, "bicubic_residual": True, "batch_norm": False, **CENTRED}
RRDBNET = {"num_feat": 32, "num_block": 3, "num_grow_ch": 16, "bicubic_residual": True, **CENTRED}
SR_COMMON = {"batch_size": 16, "patch_size": 48, "lr_schedule": "cosine", "warmup_steps": 30}
GAN_FINE_TUNE = {"epochs": 2, "steps_per_epoch": 50, "lr": 0.0001, "warmup_steps": 0, "ema_decay": 0.99,
                 "select_by": "val_ssim"}
SR_MODELS = [
    # SRCNN needs its input centred like the others: the previous two studies left it out, and
    # uncentred on white-background crops its ReLUs die and it stays at its bicubic skip (+0.3 dB
    # after 300 or 500 steps); centred, 300 steps reach +3.2 to +3.3 dB in each of three seeds.
    {"name": "srcnn_vdsr", "arch": "srcnn", "options": CENTRED, "epochs": 3, "steps_per_epoch": 100, "lr": 0.001,
     "warmup_steps": 50},
    {"name": "msrresnet", "arch": "srresnet", "options": MSRRESNET, "epochs": 3, "steps_per_epoch": 100, "lr": 0.001},
    {"name": "srgan_msrresnet", "arch": "srresnet", "options": MSRRESNET, "init_from_model": "msrresnet", "pixel_loss": "mse",
     "perceptual_weight": 1.0, "gan": {"type": "vanilla", "weight": 0.001}, **GAN_FINE_TUNE},
    {"name": "rrdb_bicubic", "arch": "rrdbnet", "options": RRDBNET, "epochs": 3, "steps_per_epoch": 100, "lr": 0.002},
    {"name": "esrgan_bicubic", "arch": "rrdbnet", "options": RRDBNET, "init_from_model": "rrdb_bicubic", "pixel_weight": 0.01,
     "perceptual_weight": 1.0, "gan": {"type": "ragan", "weight": 0.005}, **GAN_FINE_TUNE},
    {"name": "srfbn", "arch": "srfbn", "options": {"num_feat": 32, "num_group": 2, "num_step": 3, **CENTRED},
     "epochs": 2, "steps_per_epoch": 100, "lr": 0.001},
    {"name": "unet_sharpen", "arch": "unet_sharpen", "options": {"num_feat": 32, "depth": 3, **CENTRED},
     "epochs": 3, "steps_per_epoch": 100, "lr": 0.001},
]
# The harder profile trains only the route the classification there needs.
HARDER_SR = ("msrresnet",)
# The classifier is the plain reference network (classify/backbones/plain_cnn.py: 8 conv + BN layers in
# 4 stages, global average pooling, dropout) with the default recipe (one-cycle AdamW, label
# smoothing, flips and shifts) over 16 passes of the training set and mirror-image test-time
# augmentation: in the previous study it beat a quarter-width ResNet-18 (94.4 vs 93.3 % on HR) in
# the same CPU time, and one classifier for every input keeps the 2-core study inside 90 minutes.
# The super-network's SRCNN layers are narrow (16/8 channels, 5-3-3 kernels): at 48 px the
# published 9-5-5 64/32 layers cost more than the backbone itself on a CPU.
CLASSIFIER = {"backbone": "plain_cnn", "epochs": 16, "tta": True,
              "sr_options": {"channels": [16, 8], "kernels": [5, 3, 3]}}
SEEDS = {"main": [0, 1, 2], "harder": [0]}
# --sizes published: the networks at the sizes of the published work; the recipes stay (centred
# inputs, bicubic skips, warm-up and cosine), and the steps double since the GPU makes them cheap.
PUBLISHED_SR_OPTIONS = {"srresnet": {"num_block": 16, "num_feat": 64},
                        "rrdbnet": {"num_feat": 64, "num_block": 23, "num_grow_ch": 32}}
PUBLISHED_BACKBONES = ("resnet50", "xception", "inception_resnet_v2")
PUBLISHED_SEEDS = [0]  # a lent GPU's time is short: one seed per classifier
# More training cells than the workflow's default 70/15/15: the validation split only picks the
# best pass of a one-cycle schedule, which is one of the last few (3 cells are enough for that).
FRACTIONS = {"train": 0.80, "val": 0.05, "test": 0.15}


def inputs(profile: str, part: str) -> dict[str, str]:
    if part == "harder":
        # HR images, split and seeds are the main part's, so its HR runs are the reference; the
        # two-stage route stands for SR here.
        return {"lr": f"lr:{profile}", "sr": f"sr:msrresnet:{profile}"}
    return {"hr": "hr", "lr": f"lr:{profile}", "sr": f"sr:msrresnet:{profile}", "super": f"super:srcnn:{profile}"}


def published_sr_model(model: dict) -> dict:
    """One SR model of the study at its published size, for the GPU study (bf16 autocast on CUDA is
    the workflow's default)."""
    options = {**model.get("options", {}), **PUBLISHED_SR_OPTIONS.get(model["arch"], {})}
    return {**model, "options": options, "steps_per_epoch": 2 * model["steps_per_epoch"]}


def config(part: str, sizes: str = "cpu") -> dict:
    base = yaml.safe_load((REPO / "config/gband.yaml").read_text())
    base["dataset"]["source"]["path"] = str(GBAND)
    base["shards"] = 2  # 2,806 small crops: more shards only add per-job start-up on 2 cores
    base["crop_filter"]["target_size"] = CROP_SIZE
    base["split"] = {**base.get("split", {}), "fractions": FRACTIONS}
    profile = PROFILES[part]
    base["degrade"] = {"profiles": [profile]}
    models = [{**SR_COMMON, **m} for m in SR_MODELS if part == "main" or m["name"] in HARDER_SR]
    if sizes == "published":
        models = [published_sr_model(m) for m in models]
    base["sr"] = {"profiles": [profile["name"]], "models": models}
    sources = inputs(profile["name"], part)
    balances = ("smote", "none") if part == "main" else ("smote",)
    if sizes == "published":
        experiments = [{**CLASSIFIER, "name": f"{backbone}_{name}_smote", "input": source, "balance": "smote",
                        "backbone": backbone}
                       for backbone in PUBLISHED_BACKBONES for name, source in sources.items()]
        base["classify"] = {"seeds": PUBLISHED_SEEDS, "experiments": experiments}
        return base
    experiments = [{"name": f"{CLASSIFIER['backbone']}_{name}_{balance}", "input": source, "balance": balance,
                    **CLASSIFIER} for name, source in sources.items() for balance in balances
                   if name != "super" or balance == "smote"]
    base["classify"] = {"seeds": SEEDS[part], "experiments": experiments}
    return base


def model_times(workdir: Path) -> pd.DataFrame:
    """Wall time of every training job, from the rules' benchmark files."""
    rows = []
    for path in sorted((workdir / "results/benchmarks").rglob("*.tsv")):
        parts = path.relative_to(workdir / "results/benchmarks").with_suffix("").parts
        if parts[0] == "train_sr":
            rows.append({"kind": "sr", "model": parts[1], "profile": parts[2], "run": "",
                         "seconds": float(pd.read_csv(path, sep="\t")["s"].iloc[0])})
        elif parts[:2] == ("classify", "train"):
            rows.append({"kind": "classifier", "model": parts[2], "profile": "", "run": parts[3],
                         "seconds": float(pd.read_csv(path, sep="\t")["s"].iloc[0])})
    return pd.DataFrame(rows)


def _interval(row, metric: str) -> str:
    """'80.0 % (4/5) [40.0, 100.0]' as the report shows it (`karyosr.report.tables.percent_text`):
    X and Y accuracy with their test images, the right ones averaged over seeds."""
    prefix = metric.split("_")[0]
    counts = (row[f"{metric}_hits"], row[f"{prefix}_images"]) if prefix in ("x", "y") else ()
    return percent_text(row[f"{metric}_mean"], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"], *counts)


def markdown_summary(part: str, sizes: str, sr: pd.DataFrame, over_seeds: pd.DataFrame, comparisons: pd.DataFrame,
                     cells: pd.DataFrame, times: pd.DataFrame, seconds: float) -> str:
    """The study's tables as Markdown (benchmarks/results/gband_study_<part>.md)."""
    size_note = "" if sizes == "cpu" else f", {sizes} network sizes"
    lines = [f"# G-band study, {part} part ({PROFILES[part]['name']}, {CROP_SIZE} px crops{size_note})", "",
             f"Whole workflow run: {seconds / 60:.1f} min.", "", "## Super-resolution (test split)", "",
             "| method | PSNR (dB) | PSNR inside the chromosome (dB) | SSIM | PSNR vs bicubic (dB) | training (s) |",
             "|---|---|---|---|---|---|"]
    sr_times = times[times["kind"] == "sr"].set_index("model")["seconds"] if len(times) else pd.Series(dtype=float)
    for row in sr.itertuples():
        lines.append(f"| {row.method} | {row.psnr_mean:.2f} | {row.psnr_fg_mean:.2f} | {row.ssim_mean:.4f} | "
                     f"{row.psnr_gain_db:+.2f} | {sr_times.get(row.method, float('nan')):.0f} |")
    lines += ["", "## Classification (test split; mean over seeds and its 95 % bootstrap interval over test cells and "
              "seeds; X and Y: (right / test images of the class), the right ones averaged over seeds; chance "
              f"1/{N_CLASSES} = {100 / N_CLASSES:.1f} %)", "",
              "| experiment | input | balance | accuracy | cell-decoded accuracy | macro-F1 | X accuracy | "
              "Y accuracy | training (s, mean per seed) |", "|---|---|---|---|---|---|---|---|---|"]
    cls_times = (times[times["kind"] == "classifier"].groupby("model")["seconds"].mean() if len(times)
                 else pd.Series(dtype=float))
    for _, row in over_seeds.iterrows():
        decoded = _interval(row, "accuracy_decoded") if "accuracy_decoded_mean" in row else "-"
        lines.append(f"| {row['experiment']} | {row['input']} | {row['balance']} | {_interval(row, 'accuracy')} | "
                     f"{decoded} | {row['macro_f1_mean']:.3f} [{row['macro_f1_ci_low']:.3f}, "
                     f"{row['macro_f1_ci_high']:.3f}] | {_interval(row, 'x_accuracy')} | "
                     f"{_interval(row, 'y_accuracy')} | {cls_times.get(row['experiment'], float('nan')):.0f} |")
    lines += ["", "## Comparisons (differences with 95 % bootstrap intervals over test cells and seeds; the share of "
              "the LR-to-HR gap an SR route closes only where both are measured)", "",
              "| comparison | metric | experiment | baseline | difference | interval | share of gap |",
              "|---|---|---|---|---|---|---|"]
    for _, row in comparisons.iterrows():
        share = ("" if pd.isna(row["share_of_gap"]) else
                 f"{row['share_of_gap']:.0%} [{row['share_of_gap_ci_low']:.0%}, {row['share_of_gap_ci_high']:.0%}]")
        lines.append(f"| {row['comparison']} | {row['metric']} | {row['experiment']} | {row['baseline']} | "
                     f"{100 * row['difference']:+.1f} | [{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}] | "
                     f"{share} |")
    if len(cells):
        lines += ["", "## Decoded sex and cell flags", "",
                  sex_call_sentence(sex_call_summary(cells)), "", flag_summary(cells)]
    return "\n".join(lines) + "\n"


def logged_seconds(workdir: Path) -> float:
    """Wall time of a finished run from its Snakemake logs: first log file's start to last write."""
    logs = sorted((workdir / ".snakemake/log").glob("*.snakemake.log"))
    if not logs:
        sys.exit(f"{workdir}: no Snakemake log to time the run by; run the part without --collect-only")
    start = time.mktime(time.strptime(logs[0].name.split(".")[0], "%Y-%m-%dT%H%M%S"))
    return max(p.stat().st_mtime for p in logs) - start


def result_suffix(sizes: str) -> str:
    """What result file names add for these network sizes: nothing for the CPU study's."""
    return "" if sizes == "cpu" else f"_{sizes}"


def run_part(part: str, workdir: Path, cores: str, collect_only: bool = False, sizes: str = "cpu") -> dict:
    suffix = result_suffix(sizes)
    name = part + suffix
    if collect_only:  # tables of a finished run; its duration from what it recorded or its Snakemake logs
        recorded = RESULTS / f"gband_benchmark_{name}.json"
        seconds = json.loads(recorded.read_text())["seconds"] if recorded.is_file() else logged_seconds(workdir)
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(config(part, sizes), sort_keys=False))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow/Snakefile"), "--directory",
                        str(workdir), "--cores", cores, "--configfile", str(config_path), "--rerun-incomplete"],
                       check=True)
        seconds = time.perf_counter() - start

    report, tables = workdir / "results/report", workdir / "results/report/tables"
    summary = workdir / "results/classify/summary"
    profile = PROFILES[part]["name"]
    sr = pd.read_parquet(tables / "sr_methods.parquet")
    sr = sr[sr["profile"] == profile]
    sr.to_csv(RESULTS / f"gband_sr_{profile}{suffix}.csv", index=False)
    runs = pd.read_parquet(summary / "runs.parquet")
    runs.to_csv(RESULTS / f"gband_classification_runs_{name}.csv", index=False)
    over_seeds = pd.read_parquet(summary / "over_seeds.parquet")
    over_seeds.to_csv(RESULTS / f"gband_classification_{name}.csv", index=False)
    comparisons = pd.read_parquet(summary / "comparisons.parquet")
    comparisons.to_csv(RESULTS / f"gband_comparisons_{name}.csv", index=False)
    pd.read_parquet(summary / "per_class.parquet").to_csv(RESULTS / f"gband_per_class_{name}.csv", index=False)
    times = model_times(workdir)
    times.to_csv(RESULTS / f"gband_model_times_{name}.csv", index=False)
    shutil.copy(report / "summary.md", RESULTS / f"gband_report_summary_{name}.md")
    cells = pd.read_parquet(summary / "cells.parquet")
    summary_md = markdown_summary(part, sizes, sr, over_seeds, comparisons, cells, times, seconds)
    (RESULTS / f"gband_study_{name}.md").write_text(summary_md)
    return {"seconds": round(seconds), "profile": profile,
            "sr": sr.round(4).to_dict(orient="records"),
            "classification": over_seeds.round(4).to_dict(orient="records"),
            "comparisons": comparisons.round(4).to_dict(orient="records"),
            "model_seconds": times.round(1).to_dict(orient="records")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/karyosr-gband"))
    parser.add_argument("--cores", default="all")
    parser.add_argument("--part", choices=["main", "harder", "both"], default="both")
    parser.add_argument("--sizes", choices=["cpu", "published"], default="cpu",
                        help="network sizes: the 2-core CPU study, or the published ones (for a GPU)")
    parser.add_argument("--collect-only", action="store_true", help="rewrite the results of finished runs")
    args = parser.parse_args()
    if not GBAND.is_dir():
        sys.exit(f"G-band data not found at {GBAND}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    parts = ["main", "harder"] if args.part == "both" else [args.part]
    device = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.get_device_name() "
                             "if torch.cuda.is_available() else 'cpu')"], capture_output=True, text=True).stdout.strip()
    for part in parts:  # each part recorded as soon as it is done
        name = part + result_suffix(args.sizes)
        result = run_part(part, args.workdir / name, args.cores, args.collect_only, args.sizes)
        seeds = config(part, args.sizes)["classify"]["seeds"]
        record(f"gband_benchmark_{name}", {"device": device, "images": 2806, "crop_size": CROP_SIZE,
                                           "sizes": args.sizes, "seeds": seeds, **result})


if __name__ == "__main__":
    main()
