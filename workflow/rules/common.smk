import os
import sys
from pathlib import Path

# The rules' scripts import the karyosr package of this checkout, also inside conda
# environments built by --sdm conda, which hold only third-party packages.
SRC = str(Path(workflow.basedir) / "src")
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p))
sys.path.insert(0, SRC)

from karyosr.config import load_schema, validate as validate_config
from karyosr.shards import shard_names


validate_config(config, load_schema(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"))


wildcard_constraints:
    shard=r"\d{3}",
    profile=r"[A-Za-z0-9_]+",
    method=r"[A-Za-z0-9_]+",


SHARDS = shard_names(config["shards"])
PROFILES = {profile["name"]: profile for profile in config["degrade"]["profiles"]}
METHODS = list(config["upscale"]["methods"])
DATASET = config["dataset"]["name"]
REPORT_TABLES = ["sr_methods", "stage_counts", "class_counts", "rejected", "software"]


def raw_root():
    """The folder holding the raw dataset: a local folder as given, else what fetch produced."""
    source = config["dataset"]["source"]
    if source["type"] == "path" and Path(source["path"]).expanduser().is_dir():
        return source["path"]
    return f"results/raw/{DATASET}"


def shard_paths(output):
    return expand("results/{output}/shards/{shard}.parquet", output=output, shard=SHARDS)


def final_outputs():
    manifests = ["ingest", "crop_filter", "split"]
    manifests += [f"degrade/{profile}" for profile in PROFILES]
    manifests += [f"sr/{method}/{profile}" for method in METHODS for profile in PROFILES]
    return [f"results/{m}/manifest.parquet" for m in manifests] + [
        "results/report/index.html",
        "results/report/summary.md",
    ]
