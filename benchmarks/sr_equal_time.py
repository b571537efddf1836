"""SR recipes at equal CPU time: every architecture's default recipe against the benchmark's own
plain residual network (benchmarks/reference_sr.py), each trained for the same wall time on one
CPU thread on the same G-band training pairs, scored inside the chromosome on the test split.

Needs the main part of the G-band study in ``--workdir`` (its crop_filter shards, its x4 bicubic
LR shards and its split: ``python benchmarks/gband_benchmark.py --part main``, or only up to
rule degrade). Each workflow model is trained by the workflow's own ``train_sr`` code with the
config the workflow would give a ``{name, arch}`` entry (plus any keys of ``--recipes``); its
epochs x steps are set from a timed probe of its training step so that the run fills the budget,
and the learning-rate schedule anneals over it as the reference's does over its wall time.

Reported per method: PSNR inside the dilated chromosome mask, its gain over MATLAB bicubic with a
95 % bootstrap interval over metaphase cells (images of one cell are not independent), the gain per
CPU-minute of training, and the paired difference to the reference. Writes
benchmarks/results/sr_equal_time[_<label>].{md,csv,json}.

    python benchmarks/sr_equal_time.py [--minutes 3] [--archs srcnn srresnet ...]
        [--recipes '[{"name": "srresnet_b8", "arch": "srresnet", "options": {"num_block": 8}}]']
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from common import RESULTS, record
from reference_sr import super_resolve_images, train_for

PROFILE = "x4_bicubic"
REFERENCE = "reference_cnn"
# The reference at 48 px crops: 8 conv layers of 64 channels, whole crops as patches, batch 16.
REFERENCE_SPEC = {"width": 64, "depth": 8, "patch": 48, "batch": 16}
ARCHS = ("srcnn", "srresnet", "rrdbnet", "srfbn", "unet_sharpen")
PROBE_STEPS, PROBE_WARM = 20, 5
N_BOOT = 2000


def data(workdir: Path):
    from karyosr.sr.data import load_pairs

    hr = sorted((workdir / "results/crop_filter/shards").glob("*.parquet"))
    lr = sorted((workdir / f"results/degrade/{PROFILE}/shards").glob("*.parquet"))
    if not hr or not lr:
        raise SystemExit(f"{workdir}: no crop_filter or degrade/{PROFILE} shards; run the G-band study's main part")
    return hr, lr, {split: load_pairs(hr, lr, split) for split in ("train", "val", "test")}


def study_config(workdir: Path, models: list[dict]) -> dict:
    """The validated config of the study with ``models`` as its SR models and no classifiers."""
    from karyosr import config as karyosr_config

    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["sr"] = {**config.get("sr", {}), "models": copy.deepcopy(models), "device": "cpu"}
    config["classify"] = {**config.get("classify", {}), "experiments": [], "ensembles": []}
    return karyosr_config.validate(config)


def model_settings(workdir: Path, entry: dict) -> dict:
    """``entry``'s settings as the workflow's train_sr receives them (defaults filled in)."""
    from karyosr.config import sr_model_settings

    return sr_model_settings(study_config(workdir, [entry]), entry["name"])


def step_seconds(cfg: dict, pairs: dict) -> float:
    """Median seconds of one training step of the configured model (the workflow's training task, build_task)."""
    import torch

    from karyosr.sr.tasks import build_task
    from karyosr.sr.train import build_model, resolve_options

    train = pairs["train"]
    model = build_model({**cfg, "options": resolve_options(cfg["options"], train.lr)}, train.scale)
    task = build_task(cfg, model, train, pairs["val"], torch.device("cpu"), None)
    times = []
    for step in range(PROBE_WARM + PROBE_STEPS):
        start = time.perf_counter()
        task.train_step(step)
        times.append(time.perf_counter() - start)
    return float(np.median(times[PROBE_WARM:]))


def train_workflow_model(cfg: dict, minutes: float, hr_shards, lr_shards, pairs: dict, out: Path) -> dict:
    """Train one workflow model (its train_sr settings ``cfg``) to fill ``minutes``; returns what it
    did and the model file."""
    from karyosr.sr import train as sr_train

    probe = step_seconds(cfg, pairs)
    total = max(int(60 * minutes / probe), cfg["epochs"])
    timed = {**cfg, "steps_per_epoch": math.ceil(total / cfg["epochs"])}
    model_path = out / f"{cfg['name']}.safetensors"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as checkpoints:
        sr_train.run(hr_shards, lr_shards, timed, seed=0, out_model=model_path, out_history=out / f"{cfg['name']}.csv",
                     checkpoint_dir=checkpoints, threads=1)
    seconds = time.perf_counter() - start
    return {"arch": cfg["arch"], "model_path": str(model_path), "probe_step_ms": round(1000 * probe, 1),
            "steps": timed["epochs"] * timed["steps_per_epoch"], "train_seconds": round(seconds, 1),
            "recipe": {k: timed[k] for k in ("arch", "options", "batch_size", "patch_size", "lr", "lr_schedule",
                                             "warmup_steps", "pixel_loss", "epochs", "grad_clip")}}


def score_test(images: np.ndarray, pairs: dict, masks: np.ndarray, metrics: dict) -> pd.DataFrame:
    from karyosr.quality.full_reference import score

    test = pairs["test"]
    return score(test.hr, images, metrics, masks)[["psnr", "psnr_fg", "ssim_fg"]]


def cache_key(what: dict, minutes: float) -> str:
    """A trained entry is reused while what it trains with is the same: the reference's spec, or a
    workflow model's validated settings whatever its name (a recipe given in full and the same
    recipe as an architecture's defaults are one run)."""
    text = json.dumps({"what": what, "minutes": minutes}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run(args) -> dict:
    import torch

    from karyosr.io import shards
    from karyosr.quality.full_reference import foreground_masks
    from karyosr.resize import imresize
    from karyosr.sr.infer import load_model
    from karyosr.sr.inference import predict

    torch.set_num_threads(1)
    hr_shards, lr_shards, pairs = data(args.workdir)
    test = pairs["test"]
    split = shards.read_table(args.workdir / "results/split/manifest.parquet",
                              columns=["image_id", "group", "polarity", "threshold_level"])
    meta = split.drop_duplicates("image_id").set_index("image_id").loc[test.image_ids]
    metrics = study_config(args.workdir, [])["metrics"]
    masks = foreground_masks(test.hr, meta["polarity"], meta["threshold_level"], metrics["foreground_dilation"])
    scores = {"bicubic (MATLAB)": score_test(imresize(test.lr, scale=test.scale), pairs, masks, metrics)}
    rows = {"bicubic (MATLAB)": {"method": "bicubic (MATLAB)", "train_seconds": 0.0}}

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    entries = json.loads(args.recipes) if args.recipes else [{"name": a, "arch": a} for a in args.archs]
    jobs = ([{"name": REFERENCE, "reference": REFERENCE_SPEC}] if not args.no_reference else []) + entries
    for entry in jobs:
        settings = None if "reference" in entry else model_settings(args.workdir, entry)
        key = cache_key(entry["reference"] if settings is None else
                        {k: v for k, v in settings.items() if k != "name"}, args.minutes)
        done = cache / f"{key}.json"
        if done.is_file():
            found = {**json.loads(done.read_text()), "method": entry["name"], "entry": entry}
            print(f"{entry['name']}: kept from {done}")
        else:
            if "reference" in entry:
                net, info = train_for(pairs["train"], entry["reference"], args.minutes)
                images = super_resolve_images(net, test.lr, test.peak)
                info = {"arch": "reference (benchmarks/reference_sr.py)", "recipe": entry["reference"], **info}
            else:
                info = train_workflow_model(settings, args.minutes, hr_shards, lr_shards, pairs, cache)
                model, _ = load_model(info.pop("model_path"))
                images = predict(model, test.lr, test.scale, test.peak, torch.device("cpu"), bf16=False)
                info["parameters"] = sum(p.numel() for p in model.parameters())
            per_image = score_test(images, pairs, masks, metrics)
            per_image.to_parquet(cache / f"{key}.parquet", index=False)
            found = {"method": entry["name"], "entry": entry, **info}
            done.write_text(json.dumps(found, indent=2, default=str) + "\n")
            print(f"{entry['name']}: {info.get('steps')} steps in {info['train_seconds']} s, "
                  f"PSNR inside {per_image['psnr_fg'].mean():.2f} dB")
        scores[entry["name"]] = pd.read_parquet(cache / f"{key}.parquet")
        rows[entry["name"]] = found
    return summarise(rows, scores, meta["group"].to_numpy(), args)


def summarise(rows: dict, scores: dict, cells: np.ndarray, args) -> dict:
    from karyosr.classify.metrics import bootstrap_ci

    bicubic = scores["bicubic (MATLAB)"]["psnr_fg"].to_numpy()
    reference = scores[REFERENCE]["psnr_fg"].to_numpy() if REFERENCE in scores else None
    table = []
    for name, row in rows.items():
        psnr_fg = scores[name]["psnr_fg"].to_numpy()
        gain = psnr_fg - bicubic
        low, high = bootstrap_ci(gain, N_BOOT, 0, clusters=cells)
        minutes = row.get("train_seconds", 0.0) / 60
        line = {"method": name, "arch": row.get("arch", "-") if name != "bicubic (MATLAB)" else "-",
                "parameters": row.get("parameters"), "steps": row.get("steps"),
                "step_ms": row.get("probe_step_ms") or (round(1000 * row["train_seconds"] / row["steps"], 1)
                                                        if row.get("steps") else None),
                "train_seconds": row.get("train_seconds"), "psnr_fg": float(psnr_fg.mean()),
                "ssim_fg": float(scores[name]["ssim_fg"].mean()), "psnr": float(scores[name]["psnr"].mean()),
                "gain_db": float(gain.mean()), "gain_low": low, "gain_high": high,
                "gain_db_per_cpu_minute": float(gain.mean()) / minutes if minutes else None,
                "recipe": json.dumps(row.get("recipe", {}), sort_keys=True)}
        if reference is not None and name != REFERENCE and name != "bicubic (MATLAB)":
            diff = psnr_fg - reference
            d_low, d_high = bootstrap_ci(diff, N_BOOT, 0, clusters=cells)
            line.update(vs_reference_db=float(diff.mean()), vs_reference_low=d_low, vs_reference_high=d_high)
        table.append(line)
    return {"minutes": args.minutes, "profile": PROFILE, "test_images": int(len(cells)),
            "test_cells": int(len(set(cells))), "rows": table}


def markdown(result: dict, label: str) -> str:
    def db(value, low=None, high=None):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        text = f"{value:+.2f}"
        return text + (f" [{low:+.2f}, {high:+.2f}]" if low is not None and not math.isnan(low) else "")

    lines = [f"# SR at equal CPU time{f' ({label})' if label else ''}", "",
             f"G-band crops, 48 px HR, x4 bicubic LR (12 px), {result['test_images']} test images of "
             f"{result['test_cells']} metaphase cells. Every network trained for {result['minutes']:g} min of wall "
             "time on one CPU thread on the same training pairs (the workflow's models by its own train_sr code, "
             "epochs x steps set from a timed probe of their step); PSNR inside the dilated chromosome mask; gain "
             "over MATLAB bicubic and difference to the reference with 95 % bootstrap intervals over cells.", "",
             "| method | arch | parameters | step (ms) | steps | train (s) | PSNR inside (dB) | gain over bicubic (dB) "
             "| dB per CPU-minute | vs reference (dB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        params = f"{row['parameters']:,}" if row.get("parameters") else "-"
        per_minute = f"{row['gain_db_per_cpu_minute']:.2f}" if row.get("gain_db_per_cpu_minute") else "-"
        lines.append(f"| {row['method']} | {row['arch']} | {params} | {row['step_ms'] or '-'} | {row['steps'] or '-'} | "
                     f"{row['train_seconds'] or '-'} | {row['psnr_fg']:.2f} | "
                     f"{db(row['gain_db'], row['gain_low'], row['gain_high'])} | {per_minute} | "
                     f"{db(row.get('vs_reference_db'), row.get('vs_reference_low'), row.get('vs_reference_high'))} |")
    lines += ["", "Recipes (what each entry trained with):", ""]
    lines += [f"- {row['method']}: `{row['recipe']}`" for row in result["rows"] if row["recipe"] != "{}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/karyosr-gband/main"))
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS))
    parser.add_argument("--recipes", help="JSON list of sr.models entries to train instead of one per arch")
    parser.add_argument("--no-reference", action="store_true", help="leave the reference out (tuning runs)")
    parser.add_argument("--label", default="", help="suffix of the result files")
    parser.add_argument("--cache", default="/tmp/karyosr-sr-equal-time")
    args = parser.parse_args()
    started = time.perf_counter()
    result = run(args)
    result["seconds"] = round(time.perf_counter() - started, 1)
    name = "sr_equal_time" + (f"_{args.label}" if args.label else "")
    (RESULTS / f"{name}.md").write_text(markdown(result, args.label))
    pd.DataFrame(result["rows"]).to_csv(RESULTS / f"{name}.csv", index=False)
    record(name, result)
    print((RESULTS / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
