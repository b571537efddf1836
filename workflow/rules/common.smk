import importlib.util
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# Paths of this workflow's own files come from the file being parsed, never from
# workflow.basedir, which is the *importing* workflow's folder when karyosr is used as a module.
WORKFLOW_DIR = Path(workflow.current_basedir).parent
CHECKOUT_SRC = WORKFLOW_DIR.parent / "src"

# The rules' scripts run the karyosr package of the checkout this workflow comes from (also
# inside conda environments built by --sdm conda, which hold only third-party packages), so rules
# and code always match; a deployed copy without src/ uses the installed package.
if (CHECKOUT_SRC / "karyosr").is_dir():
    os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (str(CHECKOUT_SRC), os.environ.get("PYTHONPATH")) if p))
    sys.path.insert(0, str(CHECKOUT_SRC))
elif importlib.util.find_spec("karyosr") is None:
    raise WorkflowError(
        f"karyosr: the Python package is neither beside this workflow ({CHECKOUT_SRC}) nor installed; "
        "install it in the environment that runs Snakemake: pip install karyosr (or pip install -e <checkout>)"
    )

from karyosr.config import (
    WHOLE_IMAGE_LAYOUTS,
    sr_model_settings,
    sr_run_settings,
    validate as validate_config,
)
from karyosr.classify.input_keys import input_slug, parse_input
from karyosr.io.export import HR as EXPORT_HR, LR as EXPORT_LR, select_pairs as select_export_pairs
from karyosr.io.shards import shard_names
from karyosr.report.viewer import input_key as viewer_input_key

from snakemake.logging import logger


def config_sources():
    """Where this run's config came from, as one line for the log: the files in the order they
    were merged (later ones override earlier ones). Snakemake reads DEFAULT_CONFIGFILE from the
    working directory and, when --configfile is given, goes on without a word if it is not there
    (with --directory elsewhere, say), so that is said too."""
    command_line = list(workflow.overwrite_configfiles)
    read = [str(Path(path).absolute()) for path in workflow.configfiles if path not in command_line]
    skipped = []
    if workflow.modifier.skip_configfile:
        skipped.append(f"{DEFAULT_CONFIGFILE} (karyosr is a module: the importing workflow gives the config)")
    elif not read:
        skipped.append(f"{DEFAULT_CONFIGFILE} (not in the working directory {Path.cwd()})")
    read += [f"{path} (--configfile)" for path in command_line]
    if workflow.config_settings.config:
        read.append("--config values")
    return "karyosr config read from: " + ", then ".join(read) + "".join(f"; not read: {s}" for s in skipped)


if workflow.is_main_process:
    logger.info(config_sources())

# Defaults filled in by snakemake.utils.validate, keys sorted (see karyosr.config.validate).
validate_config(config)

# Threads of a job that trains or runs a network: one core per job. On 2 cores two one-thread
# trainings side by side got through 22 % more steps than one two-thread training at a time, and a
# two-thread job stalls whenever anything else needs a core (benchmarks/README.md); raise it with
# --set-threads on larger machines.
TORCH_JOB_THREADS = 1
# The GPU request of every job that trains or runs a network (each adds its memory and runtime): one
# GPU where the cluster has them, the job's threads as the CPUs beside it.
GPU_JOB = dict(gpu=1, cpus_per_gpu=lambda wc, threads: threads)


# Bookkeeping jobs that take seconds run in the submitting process, not as cluster jobs; fetch
# too, because compute nodes often have no internet.
localrules:
    fetch,
    inventory,
    pairs_manifest,
    manifest,
    rejected,
    split,
    aggregate_metrics,
    sample_grid,
    plot_quality,
    plot_training,
    classification_summary,
    report,
    viewer,
    export_images,


wildcard_constraints:
    shard=r"\d{3}",
    profile=r"[A-Za-z0-9_]+",
    method=r"[A-Za-z0-9_]+",


SHARDS = shard_names(config["shards"])
PROFILES = {profile["name"]: profile for profile in config["degrade"]["profiles"]}
# Whole-image layouts skip crop_filter: a magnification series trains on registered pairs (paired
# profiles), a folder of whole images (layout images) on tiles cut from them (synthetic profiles).
WHOLE_IMAGES = config["dataset"]["layout"]["type"] in WHOLE_IMAGE_LAYOUTS
TILED = config["dataset"]["layout"]["type"] == "images"
PAIRED = [name for name, profile in PROFILES.items() if profile["paired"]]
SYNTHETIC_PROFILES = [name for name in PROFILES if name not in PAIRED]
# Profiles whose held-out whole images (or low-magnification captures) are enhanced whole and
# scored without a reference.
WHOLE_PROFILES = list(PROFILES) if TILED else PAIRED
# The registration table whole-image rules read for a magnification series; none for a folder.
REGISTERED_PAIRS = [] if TILED else "results/register/pairs.parquet"
# Memory (MB) of the largest image ingest admits, 16-bit, with the copies a job makes of it.
IMAGE_MB = 4 * 2 * config["ingest"]["max_pixels"] // 10**6
# Memory (MB) of a job that scores or draws enhanced whole images one at a time: NIQE/PIQE of a
# 16 Mpx output peaked at 1.9 GB (about 120 bytes per pixel; benchmarks/large_image_memory.py).
ENHANCED_IMAGE_MB = max(2000, 200 * config["whole"]["max_pixels"] // 10**6)
METHODS = list(config["upscale"]["methods"])
SR_MODELS = {model["name"]: model for model in config["sr"]["models"]}
SR_PROFILES = [p for p in config["sr"]["profiles"] if p in PROFILES] if SR_MODELS else []
SR_SETTINGS = sr_run_settings(config)
DATASET = config["dataset"]["name"]
EXPERIMENTS = {e["name"]: e for e in config["classify"]["experiments"]}
# The {input} wildcard of the classifier-input rules is an input key's path-safe slug.
CLASSIFIER_INPUTS = {input_slug(e["input"]): e["input"] for e in EXPERIMENTS.values()}
# the experiments and the ensembles of them: what the classification summary reports
SUMMARISED = [*EXPERIMENTS, *(e["name"] for e in config["classify"]["ensembles"])]
SEEDS = config["classify"]["seeds"]
CLASSIFY_SETTINGS = {k: config["classify"][k] for k in ("device", "bf16")}
CELL_DECODING = {k: config["classify"][k] for k in ("cell_decoding", "flag_likelihood_ratio", "complete_cells")}
REPORT_TABLES = ["sr_methods", "stage_counts", "class_counts", "rejected", "software"]


def raw_root():
    """The folder holding the raw dataset: a local folder as given, else what fetch produced."""
    source = config["dataset"]["source"]
    if source["type"] == "path" and Path(source["path"]).expanduser().is_dir():
        return source["path"]
    return f"results/raw/{DATASET}"


def shard_paths(output):
    return expand("results/{output}/shards/{shard}.parquet", output=output, shard=SHARDS)


def hr_stage(profile):
    """The stage output holding a profile's HR images: crop_filter's shards for a synthetic
    degradation of crops, the tiles of whole images, the registered HR tiles for a paired profile."""
    if profile in PAIRED:
        return f"paired/{profile}/hr"
    return "tiles" if TILED else "crop_filter"


def quality_stage():
    """The HR images the NIQE model is fitted on and the HR quality is measured on: crop_filter's,
    the tiles of whole images, or the first paired profile's HR tiles."""
    return hr_stage(next(iter(PROFILES))) if WHOLE_IMAGES else "crop_filter"


def quality_split():
    """The table giving the split of every HR image of quality_stage() (tiles carry their own)."""
    return f"results/{quality_stage()}/manifest.parquet" if WHOLE_IMAGES else "results/split/manifest.parquet"


# At x1 (restoration profiles) every interpolation returns the degraded input itself: bicubic stands
# for it (the "no change" reference) beside the unsharp-mask sharpening.
RESTORATION_BASELINES = ("bicubic", "unsharp")


def methods_for(profile):
    """Interpolation baselines everywhere; learned models on the profiles they train on."""
    baselines = METHODS if PROFILES[profile]["scale"] > 1 else [m for m in METHODS if m in RESTORATION_BASELINES]
    return baselines + (list(SR_MODELS) if profile in SR_PROFILES else [])


def whole_quality_inputs(wildcards):
    """Every method's enlarged whole captures of a paired profile, named by method."""
    return {
        method: expand(f"results/whole/{method}/{wildcards.profile}/shards/{{shard}}.parquet", shard=SHARDS)
        for method in methods_for(wildcards.profile)
    }


def method_profile_pairs():
    return [(method, profile) for profile in PROFILES for method in methods_for(profile)]


EXPORT_PAIRS = select_export_pairs(config["export"], PROFILES, methods_for)


def export_sources(wildcards):
    """The shards one export folder is written from: LR, an SR method's output or HR."""
    if wildcards.method == EXPORT_LR:
        return shard_paths(f"degrade/{wildcards.profile}")
    if wildcards.method == EXPORT_HR:
        return shard_paths(hr_stage(wildcards.profile))
    return shard_paths(f"sr/{wildcards.method}/{wildcards.profile}")


def viewer_profiles():
    """Every profile with its methods, in config order: what viewer.html shows."""
    return [
        {"name": name, "scale": profile["scale"], "methods": methods_for(name)} for name, profile in PROFILES.items()
    ]


def viewer_inputs(wildcards):
    """The LR and SR shards of every profile and method, under karyosr.report.viewer.input_key names."""
    inputs = {}
    for profile in viewer_profiles():
        inputs[viewer_input_key("lr", profile["name"])] = shard_paths(f"degrade/{profile['name']}")
        for method in profile["methods"]:
            inputs[viewer_input_key("sr", profile["name"], method)] = shard_paths(f"sr/{method}/{profile['name']}")
    return inputs


def uses_pipeline_features(name):
    model = SR_MODELS[name]
    return model["perceptual_weight"] > 0 and model["perceptual"]["network"] == "pipeline_features"


def train_sr_inputs(wildcards):
    inputs = {
        "hr": shard_paths(hr_stage(wildcards.profile)),
        "lr": shard_paths(f"degrade/{wildcards.profile}"),
    }
    if uses_pipeline_features(wildcards.model):
        inputs["features"] = "results/models/features/model.safetensors"
    model = SR_MODELS[wildcards.model]
    source = model["init_from_model"]
    if source:
        inputs["init_from_model"] = f"results/models/{source}/{wildcards.profile}/model.safetensors"
    # Files the user supplies are inputs too: Snakemake checks they exist and reruns on a change.
    if model["init_from"]:
        inputs["init_from"] = model["init_from"]
    if model["perceptual_weight"] > 0 and model["perceptual"]["weights"]:
        inputs["perceptual_weights"] = model["perceptual"]["weights"]
    return inputs


def intermediate(path):
    """An image shard no result needs once its consumers ran: kept (keep_intermediate: true, the
    default) or deleted by Snakemake after its last consumer, which bounds a large run's disk use."""
    return path if config["keep_intermediate"] else temp(path)


def user_file(path):
    """A user-supplied file as a rule input (declared, so checked and tracked), or none."""
    return [path] if path else []


def classifier_eval_shards(input_key):
    """The image shards a classifier on this input is validated and tested on."""
    source = parse_input(input_key)
    if source["kind"] == "hr":
        return shard_paths("crop_filter")
    if source["kind"] == "super":
        return shard_paths(f"degrade/{source['profile']}")
    return shard_paths(f"classify/inputs/{input_slug(input_key)}")


def classifier_input_sources(wildcards):
    """What classifier_inputs needs for one shard of an lr:/sr: input."""
    source = parse_input(CLASSIFIER_INPUTS[wildcards.input])
    inputs = {"lr": f"results/degrade/{source['profile']}/shards/{wildcards.shard}.parquet"}
    if source["kind"] == "sr":
        inputs["model"] = f"results/models/{source['model']}/{source['profile']}/model.safetensors"
    return inputs


def experiment_settings(name):
    return {**EXPERIMENTS[name], **CLASSIFY_SETTINGS}


def experiment_profile(name):
    """The degradation profile an experiment's input comes from; None for hr inputs."""
    source = parse_input(EXPERIMENTS[name]["input"])
    return PROFILES[source["profile"]] if "profile" in source else None


def balanced_set(name):
    experiment = EXPERIMENTS[name]
    method = "none" if experiment["balance"] == "class_weight" else experiment["balance"]
    return f"results/classify/balanced/{input_slug(experiment['input'])}/{method}.parquet"


def classification_outputs():
    if not EXPERIMENTS:
        return []
    return ["results/classify/summary/over_seeds.parquet"]


def final_outputs():
    if WHOLE_IMAGES:
        return whole_image_outputs()
    manifests = ["ingest", "crop_filter", "split"]
    manifests += [f"degrade/{profile}" for profile in PROFILES]
    manifests += [f"sr/{method}/{profile}" for method, profile in method_profile_pairs()]
    return (
        [f"results/{m}/manifest.parquet" for m in manifests]
        + classification_outputs()
        + [
            "results/report/index.html",
            "results/report/summary.md",
            "results/report/viewer.html",
        ]
        + [f"results/export/{profile}/{method}" for profile, method in EXPORT_PAIRS]
    )


def whole_image_outputs():
    """What a run on whole images produces: the ingested images, their split, the HR tiles (cut
    from the images, or registered pairs of a magnification series with their registration
    tables), every profile's LR tiles, SR outputs and metrics, the held-out whole images enhanced
    and scored without a reference, and the report."""
    outputs = ["results/ingest/manifest.parquet", "results/ingest/rejected.parquet", "results/split/manifest.parquet"]
    if TILED:
        outputs += ["results/tiles/manifest.parquet", "results/tiles/images.parquet", "results/tiles/rejected.parquet"]
    else:
        outputs += ["results/register/pairs.parquet", "results/register/rejected.parquet"]
    manifests = [f"degrade/{p}" for p in PROFILES] + [f"paired/{p}/hr" for p in PAIRED]
    manifests += [f"sr/{method}/{profile}" for method, profile in method_profile_pairs()]
    outputs += [f"results/{m}/manifest.parquet" for m in manifests]
    if WHOLE_PROFILES:
        outputs += ["results/metrics/summary.parquet", "results/report/index.html", "results/report/summary.md"]
        outputs += [f"results/whole/{profile}/quality.parquet" for profile in WHOLE_PROFILES]
    return outputs


def report_figures(wildcards):
    """The figures the report (of a run on crops) embeds, a sample grid and quality box plots per
    profile and the SR training curves when a model trains."""
    return {
        "grids": expand("results/report/samples_{profile}.png", profile=PROFILES),
        "quality": expand("results/report/quality_{profile}.png", profile=PROFILES),
        "training": ["results/report/training_curves.png"] if SR_MODELS and SR_PROFILES else [],
    }


def report_classification_inputs(wildcards):
    """What the report (of a run on crops) shows of the classifiers, each empty without experiments;
    the summaries over seeds, per class, of the comparisons and of the cells, the confusion
    matrices, the t-SNE plot and the training histories."""
    return {
        "classification": classification_outputs(),
        "per_class": ["results/classify/summary/per_class.parquet"] if EXPERIMENTS else [],
        "comparisons": ["results/classify/summary/comparisons.parquet"] if EXPERIMENTS else [],
        "cells": ["results/classify/summary/cells.parquet"] if EXPERIMENTS else [],
        "confusion": expand("results/report/confusion_{experiment}.png", experiment=SUMMARISED),
        "tsne": ["results/report/tsne.png"] if EXPERIMENTS else [],
        "class_histories": expand(
            "results/classify/models/{experiment}/seed{seed}/history.parquet", experiment=EXPERIMENTS, seed=SEEDS
        ),
    }
