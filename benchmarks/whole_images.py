"""Whole images end to end (issue 21): a folder of about 100 generated metaphase photographs of 6 Mpx
(3 slides x 34 colour JPEGs of 3264 x 1840, a tenth of them with JPEG decoder warnings) through the
workflow's whole-image path - ingest by folder, split by slide, HR tiles with the detail filter, a
x4 (MATLAB bicubic) and a scale-1 restoration profile (blur, noise, JPEG, contrast loss), the
baselines and two small learned SR models on both, metrics on the held-out tiles, the held-out
original photos enhanced whole and scored without a reference (NIQE/PIQE before and after), the
report - and a reference network written here in plain torch, trained for a fixed time on the same
training tiles and scored on the same test tiles, to show where the workflow's models stand.

    python benchmarks/whole_images.py [--workdir DIR] [--cores 2] [--slides 3] [--photos-per-slide 34]
        [--size 1840 3264] [--tiles-per-image 12] [--enhance-max-pixels 250000]
        [--reference-minutes 6 3] [--quick] [--label NAME] [--collect DIR]

Measures: the workflow's wall time, job time and CPU time per stage and the peak memory (largest
``max_rss`` of a job) per stage from ``results/benchmarks/**/*.tsv``; photos ingested, decoded with
a warning, tiles cut / kept / dropped as flat per split (``results/tiles/images.parquet``); per
profile and method PSNR over the tile and inside the object, SSIM, the gain over bicubic with its
95 % bootstrap interval over slides (none with a single test slide) and the training time of each
model; NIQE/PIQE of the held-out photos before and after each method with the change per image;
what whole-image enhancement costs per output megapixel; and the reference network beside them.
Writes ``benchmarks/results/<label>.json`` and ``<label>.md`` (label ``whole_images``) with the
machine, date and git commit.

The photos are generated into ``<workdir>/photos`` (kept and reused when they exist with the same
parameters), the config is ``<workdir>/config.yaml``, Snakemake runs with ``--directory
<workdir>``, and the benchmark's own records (run time, the reference network's scores) go to
``<workdir>/benchmark/``. ``--collect DIR`` only reads a finished run in DIR (the reference network
as recorded there). ``--quick`` is a smoke test of the script: tiny training runs and 0.3-minute
reference budgets (with ``--slides 3 --photos-per-slide 3 --size 480 640`` it runs in minutes);
its figures mean nothing, so its label defaults to ``whole_images_quick``.

Sizing (2 CPU cores): at scale 1 the networks run at full resolution, so there the RRDBNet costs
about 10 times what it costs at x4 per output pixel, and everything it does on the scale-1 profile
(validation passes, inference on the test tiles, whole photos) dominates the run. Each model trains
for 200 steps of 16 patches of 32 px with one validation pass (one core per job: about a minute at
x4, 2-6 minutes at scale 1); 12 tiles per photo keep the validation and test tiles (about 140 and
400) affordable. Whole-image enhancement is the largest cost: every method on each of the ~34
held-out photos, measured at about 190 CPU s per output megapixel of one photo for the four networks
together (RRDBNet at scale 1: 120 of them) in the smoke test, so ``--enhance-max-pixels`` (output
pixels per photo; the central crop that fits) of 500,000 costs roughly half an hour and 4,000,000
several hours. The tables give the measured seconds per output megapixel of each method to size
another run by.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from common import REPO, RESULTS, machine
from reference_sr import super_resolve_images, train_for

BENCH = "benchmark"  # the benchmark's own records inside the work folder
REFERENCE = "reference_cnn"  # the reference network's method name in the tables
PROFILES = [
    {"name": "x4_bicubic", "scale": 4, "kernel": "bicubic"},
    # Every degradation's range starts at (almost) none: a restoration network that only ever saw
    # degraded inputs sharpens and stretches a clean photo too (with blur 0.8-1.6, noise 2-6 and
    # contrast loss 0.1-0.3 every time, MSRResNet raised the held-out photos' NIQE by 4.7 and PIQE by
    # 45: results/whole_images_restore_always_degraded.md).
    {"name": "restore", "scale": 1, "blur_sigma": [0, 1.2], "noise": "gaussian", "noise_sigma": [0, 4],
     "jpeg_quality": [75, 95], "contrast_loss": [0, 0.2]},
]
BASELINES = ["bicubic", "lanczos", "unsharp"]
# Two small models that run at full resolution affordably (a scale-1 profile runs every layer at
# the photo's size: RRDBNet with two blocks cost 170 s per output megapixel on one core there):
# an MSRResNet-style SRResNet and the VDSR-style SRCNN variant, centred inputs, warm-up then cosine
# annealing; the same settings on both profiles.
CENTRED = {"input_shift": "auto"}
SR_MODELS = [
    {"name": "msrresnet", "arch": "srresnet",
     "options": {"num_block": 4, "num_feat": 32, "bicubic_residual": True, "batch_norm": False, **CENTRED}},
    {"name": "srcnn", "arch": "srcnn", "options": {**CENTRED}},
]
SR_TRAINING = {"epochs": 6, "steps_per_epoch": 150, "batch_size": 16, "patch_size": 48, "lr": 0.002,
               "warmup_steps": 20}
QUICK_TRAINING = {"epochs": 1, "steps_per_epoch": 6, "batch_size": 8, "patch_size": 32, "lr": 0.002,
                  "warmup_steps": 0}
# The reference network per scale: width, depth (3x3 conv + ReLU layers), HR patch side, batch.
REFERENCE_NET = {4: {"width": 64, "depth": 8, "patch": 64, "batch": 16},
                 1: {"width": 32, "depth": 6, "patch": 48, "batch": 16}}


# ----------------------------------------------------------------------------------------- setup


def photo_params(args) -> dict:
    return {"n_slides": args.slides, "photos_per_slide": args.photos_per_slide, "size": list(args.size),
            "warning_fraction": 0.1}


def make_photos(work: Path, params: dict, seed: int) -> dict:
    """Generate the photos into <work>/photos, or reuse them when generated with the same parameters."""
    folder, record_path = work / "photos", work / BENCH / "photos.json"
    wanted = {"params": params, "seed": seed}
    if folder.is_dir():
        recorded = json.loads(record_path.read_text()) if record_path.is_file() else None
        if recorded is None or {k: recorded.get(k) for k in wanted} != wanted:
            sys.exit(f"{folder} holds photos made with other parameters ({recorded and recorded.get('params')}); "
                     "remove it or choose another --workdir")
        print(f"reusing the {recorded['photos']} photos in {folder}")
        return recorded
    from karyosr.dataset.photos import generate_photos

    start = time.perf_counter()
    table = generate_photos(folder, params, seed)
    recorded = {**wanted, "photos": len(table), "with_spread": int(table["has_spread"].sum()),
                "with_trailing_bytes": int((table["trailing_bytes"] > 0).sum()),
                "megapixels_each": round(params["size"][0] * params["size"][1] / 1e6, 2),
                "bytes_total": int(sum(f.stat().st_size for f in folder.rglob("*.jpg"))),
                "seconds": round(time.perf_counter() - start, 1)}
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(recorded, indent=2) + "\n")
    print(f"generated {len(table)} photos in {recorded['seconds']} s")
    return recorded


def workflow_config(photos: Path, tiles_per_image: int, max_pixels: int, quick: bool) -> dict:
    training = QUICK_TRAINING if quick else SR_TRAINING
    return {
        "seed": 0,
        "shards": 2,
        "dataset": {"name": "photos", "source": {"type": "path", "path": str(photos)},
                    "layout": {"type": "images", "group": "folder"}},
        "tiles": {"size": 128, "max_per_image": tiles_per_image},
        # 3 slides: one test slide, validation tiles from the training photos
        "split": {"fractions": {"train": 0.7, "val": 0.15, "test": 0.15}},
        "degrade": {"profiles": copy.deepcopy(PROFILES)},
        "upscale": {"methods": list(BASELINES)},
        "sr": {"profiles": [p["name"] for p in PROFILES], "tile": 128, "tile_overlap": 16,
               "models": [{**copy.deepcopy(m), **training} for m in SR_MODELS]},
        "whole": {"max_pixels": max_pixels},
        "classify": {"experiments": []},
        "report": {"title": "karyosr whole images (generated metaphase photographs)"},
    }


def run_workflow(work: Path, config_path: Path, cores: str) -> tuple[float, int]:
    """Run Snakemake on the work folder, its output shown and kept in benchmark/snakemake.log:
    (wall seconds, jobs run). On a failed rule: the error block and the tail of each failed job's
    log, then exit."""
    log_path = work / BENCH / "snakemake.log"
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow/Snakefile"), "--directory",
               str(work), "--configfile", str(config_path), "--cores", str(cores), "--rerun-incomplete"]
    print(" ".join(command), flush=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            log.write(line)
            if re.match(r"^(rule |localrule |checkpoint |\d+ of \d+ steps|Error|Exiting|WorkflowError)", line):
                print(line, end="", flush=True)
        code = process.wait()
    wall = time.perf_counter() - start
    if code:
        text = log_path.read_text()
        errors = [m.start() for m in re.finditer(r"^(Error in rule|WorkflowError|RuleException|MissingInput)", text,
                                                  re.M)]
        print("\n--- Snakemake failed; its error output:\n" + (text[errors[0]:errors[0] + 6000] if errors
                                                                else text[-6000:]))
        for job_log in dict.fromkeys(re.findall(r"^\s+log: (\S+)", text, re.M)):
            path = work / job_log
            if path.is_file():
                print(f"--- tail of {job_log}:\n" + "\n".join(path.read_text().splitlines()[-40:]))
        sys.exit(f"the workflow failed after {wall:.0f} s (exit code {code}); full output in {log_path}")
    return wall, log_path.read_text().count("Finished jobid")


def record_invocation(work: Path, wall: float, jobs: int, cores: str, quick: bool) -> None:
    """Append this invocation to benchmark/run.json; one that found nothing to do is not counted, and
    a run that needed several invocations (an interrupted one resumed) says so in the tables."""
    path = work / BENCH / "run.json"
    runs = json.loads(path.read_text()).get("invocations", []) if path.is_file() else []
    if jobs:
        runs.append({"wall_seconds": round(wall, 1), "jobs": jobs, "cores": cores, "quick": quick,
                     "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds")})
    path.write_text(json.dumps({"invocations": runs}, indent=2) + "\n")


# ------------------------------------------------------------------------------- reading the run


def run_config(work: Path) -> dict:
    """The run's config with the schema's defaults filled in (the metrics settings, the bootstrap)."""
    from karyosr.config import validate

    path = work / "config.yaml"
    return validate(yaml.safe_load(path.read_text()) if path.is_file() else {})


# results/benchmarks/report/<file>: the rule that wrote it, by the file name's start
REPORT_RULES = {"report": "whole_report", "whole_figure_": "whole_figure", "quality_": "plot_quality",
                "samples_": "sample_grid", "training_curves": "plot_training", "viewer": "viewer"}


def stage_of(job: str, baselines: set[str]) -> str:
    """The rule a benchmark file belongs to, from its path under results/benchmarks."""
    parts = job.split("/")
    head = parts[0]
    if head == "sr":
        return "upscale" if parts[1] in baselines else "infer_sr"
    if head == "whole":
        return "whole_quality" if parts[-1] == "quality" else "enhance_whole"
    if head == "ingest":
        return "inventory" if parts[-1] == "inventory" else "ingest"
    if head == "metrics":
        return "hr_quality" if parts[1] == "HR" else "metrics"
    if head == "report":
        for prefix, rule in REPORT_RULES.items():
            if parts[-1].startswith(prefix):
                return rule
    return head


def job_table(work: Path, baselines: set[str]) -> pd.DataFrame:
    """One row per job with a benchmark file: stage, job, wall and CPU seconds, peak RSS (MB)."""
    root = work / "results/benchmarks"
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        job = path.relative_to(root).with_suffix("").as_posix()
        table = pd.read_csv(path, sep="\t")
        values = {column: float(pd.to_numeric(table[column], errors="coerce").iloc[0]) if column in table else math.nan
                  for column in ("s", "cpu_time", "max_rss")}
        rows.append({"stage": stage_of(job, baselines), "job": job, "seconds": values["s"],
                     "cpu_seconds": values["cpu_time"], "max_rss_mb": values["max_rss"]})
    return pd.DataFrame(rows, columns=["stage", "job", "seconds", "cpu_seconds", "max_rss_mb"])


def stage_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per stage: jobs, job seconds (sum), CPU seconds (sum), peak memory (largest max_rss of a job)."""
    if jobs.empty:
        return pd.DataFrame(columns=["stage", "jobs", "seconds", "cpu_seconds", "peak_rss_mb", "slowest_job"])
    grouped = jobs.groupby("stage")
    table = grouped.agg(jobs=("job", "size"), seconds=("seconds", "sum"), cpu_seconds=("cpu_seconds", "sum"),
                        peak_rss_mb=("max_rss_mb", "max"))
    table["slowest_job"] = jobs.loc[grouped["seconds"].idxmax(), ["stage", "job"]].set_index("stage")["job"]
    return table.sort_values("seconds", ascending=False).reset_index().round(1)


def logged_run(work: Path) -> tuple[int, float | None]:
    """(jobs finished, wall seconds from the first Snakemake log's start to the last log's last write)."""
    logs = sorted((work / ".snakemake/log").glob("*.snakemake.log"))
    if not logs:
        return 0, None
    start = time.mktime(time.strptime(logs[0].name.split(".")[0], "%Y-%m-%dT%H%M%S"))
    jobs = sum(log.read_text().count("Finished jobid") for log in logs)
    return jobs, max(log.stat().st_mtime for log in logs) - start


def data_counts(work: Path) -> dict:
    """Photos ingested, quarantined and decoded with a warning; tiles per split and in all."""
    from karyosr.io import shards

    ingest = shards.read_table(work / "results/ingest/manifest.parquet")
    rejected = shards.read_table(work / "results/ingest/rejected.parquet")
    counts = shards.read_table(work / "results/tiles/images.parquet")
    tiles = shards.read_table(work / "results/tiles/manifest.parquet", columns=["image_id", "source_id", "split"])
    per_split = counts.assign(no_tile=counts["kept"] == 0).groupby("split", sort=False).agg(
        photos=("image_id", "size"), slides=("group", "nunique"), tiles_cut=("tiles", "sum"), kept=("kept", "sum"),
        flat_dropped=("flat", "sum"), padded=("padded", "sum"), without_tiles=("no_tile", "sum"))
    per_split = per_split.reindex([s for s in ("train", "val", "test") if s in per_split.index])
    # the kept tiles of a split's photos by the tiles' own split (training photos give validation tiles
    # when the slides are too few for a validation slide)
    photo_split = counts.set_index("image_id")["split"]
    by_photo = tiles.assign(photo_split=tiles["source_id"].map(photo_split))
    per_split["kept_tiles_by_split"] = [
        ", ".join(f"{n} {s}" for s, n in by_photo.loc[by_photo["photo_split"] == split, "split"]
                  .value_counts().reindex(["train", "val", "test"]).dropna().astype(int).items())
        for split in per_split.index]
    warnings = (ingest["decode_warning"].fillna("") != "" if "decode_warning" in ingest
                else pd.Series(False, index=ingest.index))
    return {
        "photos_ingested": len(ingest), "photos_quarantined": len(rejected),
        "decoded_with_warning": int(warnings.sum()),
        "warning_examples": sorted(set(ingest.loc[warnings, "decode_warning"]))[:2],
        "megapixels_median": round(float((ingest["height"] * ingest["width"]).median()) / 1e6, 2),
        "tiles_cut": int(counts["tiles"].sum()), "tiles_kept": int(counts["kept"].sum()),
        "tiles_flat_dropped": int(counts["flat"].sum()), "photos_without_tiles": int((counts["kept"] == 0).sum()),
        "tiles_by_split": tiles["split"].value_counts().sort_index().to_dict(),
        "per_split": per_split.reset_index().to_dict(orient="records"),
    }


def sr_tables(work: Path, config: dict, jobs: pd.DataFrame, reference: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Per profile and method on the test tiles: PSNR, PSNR inside the object, SSIM, the gain over
    bicubic with its bootstrap interval over slides, and the training time; the reference network's
    rows added from its own scores on the same tiles. Also which figures the gains come from."""
    from karyosr.io import shards

    per_image = shards.read_table(work / "results/metrics/per_image.parquet")
    columns = ["image_id", "profile", "method", "psnr", "psnr_fg", "ssim"]
    if len(reference):
        per_image = pd.concat([per_image[columns], reference[columns]], ignore_index=True)
    means = per_image.groupby(["profile", "method"], sort=False).agg(
        tiles=("image_id", "nunique"), psnr=("psnr", "mean"), psnr_fg=("psnr_fg", "mean"), ssim=("ssim", "mean"))
    tiles = shards.read_table(work / "results/tiles/manifest.parquet", columns=["image_id", "group"])
    groups = tiles.drop_duplicates("image_id").set_index("image_id")["group"]
    source = "recomputed with karyosr.report.tables.gain_table (the report's function), reference network included"
    try:
        from karyosr.report.tables import gain_table

        gains = gain_table(per_image, groups, int(config["classify"]["bootstrap"]))
    except Exception as exc:  # the package moved on: the report's own table, without the reference's interval
        source = f"results/report/tables/sr_gains.csv (gain_table failed: {exc!r})"
        gains = pd.read_csv(work / "results/report/tables/sr_gains.csv")
    gains = gains[gains["versus"] == "bicubic"].set_index(["profile", "method"])
    table = means.join(gains[["groups", "psnr_gain", "psnr_ci_low", "psnr_ci_high", "psnr_fg_gain", "psnr_fg_ci_low",
                              "psnr_fg_ci_high"]], how="left").reset_index()
    if table["psnr_gain"].isna().any():  # e.g. the reference when only the report's table was read
        paired = per_image.pivot_table(index=["profile", "image_id"], columns="method", values=["psnr", "psnr_fg"])
        for i, row in table[table["psnr_gain"].isna() & (table["method"] != "bicubic")].iterrows():
            part = paired.xs(row["profile"], level="profile")
            table.loc[i, "psnr_gain"] = (part[("psnr", row["method"])] - part[("psnr", "bicubic")]).mean()
            table.loc[i, "psnr_fg_gain"] = (part[("psnr_fg", row["method"])] - part[("psnr_fg", "bicubic")]).mean()
    train = jobs[jobs["stage"] == "train_sr"].assign(
        method=lambda t: t["job"].str.split("/").str[1], profile=lambda t: t["job"].str.split("/").str[2])
    table = table.merge(train[["profile", "method", "seconds", "max_rss_mb"]].rename(
        columns={"seconds": "train_seconds", "max_rss_mb": "train_peak_rss_mb"}), how="left", on=["profile", "method"])
    if len(reference):
        info = reference.drop_duplicates("profile").set_index("profile")
        for profile, seconds in info["train_seconds"].items():
            table.loc[(table["profile"] == profile) & (table["method"] == REFERENCE), "train_seconds"] = seconds
    return table.round(3), source


def whole_quality(work: Path, config: dict, profiles: list[str]) -> dict:
    """Per profile: NIQE/PIQE of the held-out photos before ('capture') and after each method (the
    report's table), and the change per photo (after minus before) with its interval over slides."""
    from karyosr.io import shards

    out = {}
    for profile in profiles:
        summary = pd.read_csv(work / f"results/report/tables/whole_quality_{profile}.csv")
        try:
            from karyosr.report.tables import quality_changes

            changes = quality_changes(shards.read_table(work / f"results/whole/{profile}/quality.parquet"),
                                      int(config["classify"]["bootstrap"]))
            summary = summary.merge(changes.drop(columns=["images"]), how="left", on="method")
        except Exception as exc:
            print(f"{profile}: no per-photo changes ({exc!r})")
        out[profile] = summary.round(3)
    return out


def enhance_costs(work: Path) -> pd.DataFrame:
    """Per profile and method: photos enhanced, the crop enhanced (input megapixels), output
    megapixels per photo and seconds per photo and per output megapixel (the enhance_whole shards' own
    timing of each image, reading included only in the job time)."""
    from karyosr.io import shards

    rows = []
    for path in sorted((work / "results/whole").glob("*/*/shards/*.parquet")):
        meta = shards.read_shard_meta(path)
        if not len(meta):
            continue
        crop = (meta["crop_y1"] - meta["crop_y0"]) * (meta["crop_x1"] - meta["crop_x0"])
        rows.append(pd.DataFrame({"profile": meta["profile"], "method": meta["method"], "input_px": crop,
                                  "output_px": crop * meta["scale"] ** 2, "seconds": meta["seconds"]}))
    if not rows:
        return pd.DataFrame(columns=["profile", "method", "photos", "input_mpx", "output_mpx", "seconds_per_photo",
                                     "seconds_per_output_mpx"])
    every = pd.concat(rows, ignore_index=True)
    table = every.groupby(["profile", "method"], sort=False).agg(
        photos=("seconds", "size"), input_mpx=("input_px", "mean"), output_mpx=("output_px", "mean"),
        seconds_per_photo=("seconds", "mean"), seconds=("seconds", "sum"), output_px=("output_px", "sum"))
    table["input_mpx"] /= 1e6
    table["output_mpx"] /= 1e6
    table["seconds_per_output_mpx"] = table["seconds"] / (table["output_px"] / 1e6)
    return table.drop(columns=["seconds", "output_px"]).reset_index().round(3)


# ------------------------------------------------------------------------- the reference network


def train_reference(work: Path, profile: dict, minutes: float, config: dict,
                    seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Train the reference network on the workflow's training tiles of ``profile`` (HR tiles from
    results/tiles, LR tiles from results/degrade/<profile>, split 'train'; patches placed over the
    object as the workflow's PatchSampler places them) for ``minutes`` on one thread (L1, Adam,
    1e-3 with a short warm-up and cosine annealing over the time budget), then score it on the test
    tiles as the metrics rule scores every method: the per-tile scores and what the training did."""
    import torch

    from karyosr.io import shards
    from karyosr.quality.full_reference import foreground_masks, score
    from karyosr.sr.data import load_pairs

    torch.set_num_threads(1)
    hr_shards = sorted((work / "results/tiles/shards").glob("*.parquet"))
    lr_shards = sorted((work / f"results/degrade/{profile['name']}/shards").glob("*.parquet"))
    train = load_pairs(hr_shards, lr_shards, "train")
    net, trained = train_for(train, REFERENCE_NET[4 if train.scale > 1 else 1], minutes, seed)

    start = time.perf_counter()
    test = load_pairs(hr_shards, lr_shards, "test")
    sr = super_resolve_images(net, test.lr, train.peak)
    tiles = shards.read_table(work / "results/tiles/manifest.parquet", columns=["image_id", "polarity",
                                                                               "threshold_level"])
    tiles = tiles.drop_duplicates("image_id").set_index("image_id").loc[test.image_ids]
    masks = foreground_masks(test.hr, tiles["polarity"], tiles["threshold_level"],
                             config["metrics"]["foreground_dilation"])
    scores = score(test.hr, sr, config["metrics"], masks)
    per_tile = pd.concat([pd.DataFrame({"image_id": test.image_ids, "profile": profile["name"], "method": REFERENCE}),
                          scores], axis=1).assign(train_seconds=trained["train_seconds"])
    info = {"profile": profile["name"], "definition": profile, "minutes_budget": minutes, **trained,
            "test_tiles": len(test.hr), "eval_seconds": round(time.perf_counter() - start, 1)}
    return per_tile, info


def run_references(work: Path, minutes: dict[str, float], config: dict) -> None:
    """Train and score the reference network per profile; one already trained on the same profile
    definition with the same budget in this work folder is kept (a rerun after a change to the
    other profile retrains only that one, as Snakemake reruns only its jobs)."""
    for profile in PROFILES:
        done = work / BENCH / f"reference_{profile['name']}.json"
        if done.is_file():
            previous = json.loads(done.read_text())
            if previous.get("definition") == profile and previous.get("minutes") == minutes[profile["name"]]:
                print(f"reference network, {profile['name']}: kept from {done}")
                continue
        per_tile, info = train_reference(work, profile, minutes[profile["name"]], config)
        (work / BENCH).mkdir(parents=True, exist_ok=True)
        per_tile.to_parquet(work / BENCH / f"reference_{profile['name']}.parquet", index=False)
        (work / BENCH / f"reference_{profile['name']}.json").write_text(json.dumps(info, indent=2) + "\n")
        print(f"reference network, {profile['name']}: {info['steps']} steps in {info['train_seconds']} s, "
              f"PSNR {per_tile['psnr'].mean():.2f} dB, inside the object {per_tile['psnr_fg'].mean():.2f} dB")


def read_references(work: Path) -> tuple[pd.DataFrame, list[dict]]:
    frames = [pd.read_parquet(p) for p in sorted((work / BENCH).glob("reference_*.parquet"))]
    infos = [json.loads(p.read_text()) for p in sorted((work / BENCH).glob("reference_*.json"))]
    order = {p["name"]: i for i, p in enumerate(PROFILES)}
    infos.sort(key=lambda info: order.get(info["profile"], len(order)))
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), infos


# ------------------------------------------------------------------------------------ the report


def ordered(table: pd.DataFrame, profiles: list[str], methods: list[str]) -> pd.DataFrame:
    """Rows by profile, then method, in config order (anything else last)."""
    rank = lambda values, order: values.map({v: i for i, v in enumerate(order)}).fillna(len(order))
    keys = pd.DataFrame({"p": rank(table["profile"], profiles), "m": rank(table["method"], methods)})
    return table.loc[keys.sort_values(["p", "m"], kind="stable").index].reset_index(drop=True)


def summarise(work: Path, label: str, quick: bool = False) -> dict:
    config = run_config(work)
    baselines = set(config["upscale"]["methods"])
    profiles = [p["name"] for p in config["degrade"]["profiles"]]
    jobs = job_table(work, baselines)
    finished, logged_wall = logged_run(work)
    run_record = work / BENCH / "run.json"
    invocations = json.loads(run_record.read_text())["invocations"] if run_record.is_file() else []
    recorded = {"wall_seconds": round(sum(r["wall_seconds"] for r in invocations), 1) if invocations else None,
                "cores": invocations[-1]["cores"] if invocations else None,
                "quick": any(r["quick"] for r in invocations)}
    photos_record = work / BENCH / "photos.json"
    photos = json.loads(photos_record.read_text()) if photos_record.is_file() else {}
    reference, reference_info = read_references(work)
    sr, gain_source = sr_tables(work, config, jobs, reference)
    quality = whole_quality(work, config, profiles)
    git = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                         text=True).stdout
    return {
        "label": label, "quick": recorded["quick"] or quick, "workdir": str(work),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "tree_modified": bool(git.strip()),
        "photos": photos,
        "config": {k: config[k] for k in ("shards", "tiles", "split", "degrade", "upscale", "sr", "enhance")},
        "wall_seconds": recorded["wall_seconds"] or (None if logged_wall is None else round(logged_wall, 1)),
        "wall_seconds_from": (("measured by this script" + (f", {len(invocations)} invocations together"
                                                             if len(invocations) > 1 else ""))
                              if recorded["wall_seconds"] else "Snakemake logs"),
        "cores": recorded["cores"],
        "jobs": len(jobs), "jobs_finished_in_logs": finished,
        "job_seconds_total": round(float(jobs["seconds"].sum()), 1),
        "cpu_seconds_total": round(float(jobs["cpu_seconds"].sum()), 1),
        "peak_rss_mb": round(float(jobs["max_rss_mb"].max()), 1) if len(jobs) else None,
        "stages": stage_table(jobs).to_dict(orient="records"),
        "slowest_jobs": jobs.nlargest(8, "seconds").round(1).to_dict(orient="records"),
        "data": data_counts(work),
        "sr": sr.to_dict(orient="records"), "sr_gains_from": gain_source,
        "reference_network": reference_info,
        "whole_quality": {p: t.to_dict(orient="records") for p, t in quality.items()},
        "enhance_cost": ordered(enhance_costs(work), profiles,
                                [*config["upscale"]["methods"], *(m["name"] for m in config["sr"]["models"])])
        .to_dict(orient="records"),
    }


def _num(value, digits: int = 2, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _interval(low, high, digits: int = 2) -> str:
    if low is None or high is None or any(isinstance(v, float) and math.isnan(v) for v in (low, high)):
        return "–"
    return f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""])


def markdown(result: dict, machine_info: dict) -> str:
    photos, data = result["photos"], result["data"]
    wall = result["wall_seconds"]
    quick = " (quick smoke test: its figures mean nothing)" if result["quick"] else ""
    changes = " with local changes" if result["tree_modified"] else ""
    lines = [f"# Whole images: generated metaphase photographs through the workflow{quick}",
             "",
             f"{result['date']}, commit {machine_info['commit']}{changes}, "
             f"{result['cpu_count']} CPUs ({result['platform']}), Snakemake --cores {result['cores'] or '?'}.",
             ""]
    if photos:
        params = photos["params"]
        lines += [f"Photos: {photos['photos']} ({params['n_slides']} slides x {params['photos_per_slide']}) of "
                  f"{params['size'][1]} x {params['size'][0]} px ({photos['megapixels_each']} Mpx), "
                  f"{photos['with_spread']} with a metaphase spread, {photos['with_trailing_bytes']} with bytes that "
                  f"make libjpeg warn; {photos['bytes_total'] / 1e6:.1f} MB of JPEG, generated in "
                  f"{photos['seconds']} s.",
                  ""]
    lines += [f"Workflow: **{_num(wall / 60 if wall else None, 1)} min** wall ({result['wall_seconds_from']}), "
              f"{result['jobs_finished_in_logs']} jobs ({result['jobs']} with a benchmark file: the tables below), "
              f"{result['job_seconds_total']:.0f} s of job time, "
              f"{result['cpu_seconds_total']:.0f} CPU s, largest job {_num(result['peak_rss_mb'], 0)} MB RSS.", "",
              "## Time and peak memory per stage", ""]
    lines += _table(["stage", "jobs", "job seconds", "CPU seconds", "peak RSS (MB)", "slowest job"],
                    [[s["stage"], s["jobs"], _num(s["seconds"], 1), _num(s["cpu_seconds"], 1),
                      _num(s["peak_rss_mb"], 0), s["slowest_job"]] for s in result["stages"]])
    lines += ["## Photos and tiles", "",
              f"{data['photos_ingested']} photos ingested ({data['megapixels_median']} Mpx median), "
              f"{data['photos_quarantined']} quarantined, {data['decoded_with_warning']} decoded with a warning"
              + (f" (e.g. `{data['warning_examples'][0]}`)" if data["warning_examples"] else "") + ". "
              f"Tiles of {result['config']['tiles']['size']} px: {data['tiles_kept']} of {data['tiles_cut']} kept "
              f"(at most {result['config']['tiles']['max_per_image']} per photo, the most detailed), "
              f"{data['tiles_flat_dropped']} dropped as flat background, {data['photos_without_tiles']} photos "
              "without a tile.", ""]
    lines += _table(["photos' split", "photos", "slides", "tiles cut", "kept", "dropped as flat",
                     "kept tiles by split"],
                    [[r["split"], r["photos"], r["slides"], r["tiles_cut"], r["kept"], r["flat_dropped"],
                      r["kept_tiles_by_split"]] for r in data["per_split"]])
    lines += ["## Super-resolution and restoration on the held-out tiles", "",
              "Test tiles of the held-out slide(s); PSNR over the tile and inside the object (the HR tile's object "
              "mask, dilated as in the metrics rule); gain over bicubic (at scale 1: over the degraded input "
              "unchanged; Lanczos is not run there) with its 95 % bootstrap interval over slides (– with one test "
              "slide). "
              f"`{REFERENCE}` is the benchmark's own plain residual CNN on the same tiles. Gains: "
              f"{result['sr_gains_from']}.", ""]
    for profile in dict.fromkeys(r["profile"] for r in result["sr"]):
        lines += [f"### {profile}", ""]
        lines += _table(["method", "tiles", "PSNR (dB)", "PSNR in object (dB)", "SSIM", "gain (dB)", "interval",
                         "gain in object (dB)", "interval", "training (s)"],
                        [[r["method"], r["tiles"], _num(r["psnr"]), _num(r["psnr_fg"]), _num(r["ssim"], 4),
                          _num(r["psnr_gain"], 2, True), _interval(r["psnr_ci_low"], r["psnr_ci_high"]),
                          _num(r["psnr_fg_gain"], 2, True), _interval(r["psnr_fg_ci_low"], r["psnr_fg_ci_high"]),
                          _num(r["train_seconds"], 0)]
                         for r in result["sr"] if r["profile"] == profile])
    if result["reference_network"]:
        lines += ["### The reference network", "",
                  "Plain torch in this script: 3x3 conv + ReLU layers on the centred LR input, PixelShuffle up, added "
                  "to the bicubic image (scale 1: to the input); L1, Adam, one thread, a fixed time budget, patches "
                  "over the object as the workflow samples them.", ""]
        lines += _table(["profile", "width x depth", "parameters", "patch", "budget (min)", "steps", "patches/s",
                         "train tiles", "L1 first/last 50 steps"],
                        [[r["profile"], f"{r['width']} x {r['depth']}", r["parameters"], r["patch"],
                          r["minutes_budget"], r["steps"], r["patches_per_second"], r["train_tiles"],
                          f"{_num(r['l1_first_50'], 4)} / {_num(r['l1_last_50'], 4)}"]
                         for r in result["reference_network"]])
    lines += ["## Held-out photos enhanced whole: NIQE and PIQE before and after", "",
              f"Each held-out photo ('capture': before; its central crop when the output would exceed "
              f"{result['config']['enhance']['max_pixels']:,} px) and after each method; mean (sd); change per photo "
              "after minus before with its interval over slides (– with one test slide); lower is better for both, "
              "and neither is a ranking alone.", ""]
    for profile, rows in result["whole_quality"].items():
        lines += [f"### {profile}", ""]
        lines += _table(["method", "photos", "NIQE", "PIQE", "NIQE change", "interval", "PIQE change", "interval"],
                        [[r["method"], r["images"], f"{_num(r['niqe'])} ({_num(r['niqe_std'])})",
                          f"{_num(r['piqe'], 1)} ({_num(r['piqe_std'], 1)})",
                          _num(r.get("niqe_change"), 2, True), _interval(r.get("niqe_ci_low"), r.get("niqe_ci_high")),
                          _num(r.get("piqe_change"), 1, True),
                          _interval(r.get("piqe_ci_low"), r.get("piqe_ci_high"), 1)] for r in rows])
    lines += ["## What whole-image enhancement costs", "",
              "Per photo as enhance_whole timed it (one job per method, profile and shard, 2 threads each): the crop "
              "enhanced and its output, seconds per photo and per output megapixel.", ""]
    lines += _table(["profile", "method", "photos", "input (Mpx)", "output (Mpx)", "s per photo", "s per output Mpx"],
                    [[r["profile"], r["method"], r["photos"], _num(r["input_mpx"], 3), _num(r["output_mpx"], 3),
                      _num(r["seconds_per_photo"], 2), _num(r["seconds_per_output_mpx"], 2)]
                     for r in result["enhance_cost"]])
    return "\n".join(lines)


def write_results(result: dict) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = {**machine(), "platform": result["platform"]}
    json_path, md_path = RESULTS / f"{result['label']}.json", RESULTS / f"{result['label']}.md"
    json_path.write_text(json.dumps({"machine": info, **result}, indent=2, default=str) + "\n")
    md_path.write_text(markdown(result, info) + "\n")
    return json_path, md_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/karyosr-whole-images"))
    parser.add_argument("--cores", default="2")
    parser.add_argument("--slides", type=int, default=3)
    parser.add_argument("--photos-per-slide", type=int, default=34)
    parser.add_argument("--size", type=int, nargs=2, default=[1840, 3264], metavar=("H", "W"))
    parser.add_argument("--tiles-per-image", type=int,
                        help="tiles.max_per_image: the most detailed 128 px tiles kept per photo (12; quick 8)")
    parser.add_argument("--enhance-max-pixels", type=int,
                        help="whole.max_pixels: output pixels per held-out photo, its central crop beyond "
                             "(250000; quick 250000)")
    parser.add_argument("--reference-minutes", type=float, nargs=2, metavar=("X4", "RESTORE"),
                        help="training budget of the reference network on x4_bicubic and on restore "
                             "(6 3; quick 0.3 0.3)")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference network")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: tiny trainings, 0.3-minute reference budgets, label whole_images_quick")
    parser.add_argument("--label", help="result name under benchmarks/results (default whole_images)")
    parser.add_argument("--collect", type=Path, help="summarise a finished run in this folder instead of running")
    args = parser.parse_args()
    if args.collect:  # a quick run's tables keep the quick label unless told otherwise
        result = summarise(args.collect, "", quick=args.quick)
        result["label"] = args.label or ("whole_images_quick" if result["quick"] else "whole_images")
        paths = write_results(result)
        print(paths[1].read_text())
        return

    label = args.label or ("whole_images_quick" if args.quick else "whole_images")
    work = args.workdir.resolve()
    (work / BENCH).mkdir(parents=True, exist_ok=True)
    make_photos(work, photo_params(args), seed=0)
    tiles_per_image = args.tiles_per_image or (8 if args.quick else 12)
    max_pixels = args.enhance_max_pixels or 250_000
    config = workflow_config(work / "photos", tiles_per_image, max_pixels, args.quick)
    config_path = work / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    wall, jobs = run_workflow(work, config_path, args.cores)
    record_invocation(work, wall, jobs, args.cores, args.quick)
    if not args.no_reference:
        minutes = args.reference_minutes or ([0.3, 0.3] if args.quick else [6.0, 3.0])
        run_references(work, dict(zip([p["name"] for p in PROFILES], minutes)), run_config(work))
    json_path, md_path = write_results(summarise(work, label, quick=args.quick))
    print(md_path.read_text())
    print(f"written: {json_path}, {md_path}")


if __name__ == "__main__":
    main()
