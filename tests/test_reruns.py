"""Partial reruns, reproducibility across shard counts and crash recovery, through Snakemake.

One tiny run (module fixture) serves every partial-rerun case: each case writes a changed config
and asks `snakemake -n` which jobs it would run, which changes nothing on disk. The expected job
sets are computed from the config, job by job (rule and wildcards).

The workflow runs from a snapshot of this checkout taken when the module starts, so that other
people editing rules or scripts in the tree meanwhile (Snakemake reruns a script rule whose script
is newer than its outputs) cannot change what a dry run plans halfway through the module.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from karyosr.io import shards
from workflow_helpers import REPO, TINY_CONFIG, write_config

pytestmark = pytest.mark.slow

SR_MODEL = "srresnet"  # the tiny config's learned model, trained on SR_PROFILE
SR_PROFILE = "x4_bicubic"
NOISY_PROFILE = "x2_noise"

# The tiny config with its SR model trained for a handful of steps: these tests only need the model
# to exist, and training dominates the cost of a run on a busy machine.
BASE_CONFIG = copy.deepcopy(TINY_CONFIG)
BASE_CONFIG["sr"]["models"][0].update(epochs=1, steps_per_epoch=4)
# Classification (where this checkout has it): one short experiment on HR images, one seed.
if BASE_CONFIG.get("classify", {}).get("experiments"):
    BASE_CONFIG["classify"]["experiments"] = [dict(e, epochs=1, steps_per_epoch=4)
                                              for e in BASE_CONFIG["classify"]["experiments"] if e["input"] == "hr"][:1]
    BASE_CONFIG["classify"]["seeds"] = BASE_CONFIG["classify"].get("seeds", [0])[:1]
    BASE_CONFIG["classify"]["ensembles"] = []  # their members are among the experiments left out
CLASSIFIER = BASE_CONFIG.get("classify", {}).get("experiments") or None


# --- running the workflow ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of everything the workflow reads from this checkout (see the module docstring)."""
    root = tmp_path_factory.mktemp("checkout")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    for name in ("workflow", "src", "profiles", "config"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    return root


def _command(checkout: Path, workdir: Path, args) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(checkout / "workflow/Snakefile"),
            "--directory", str(workdir), "--cores", "2", *args]


ENV = {**os.environ, "PYTHONHASHSEED": "0"}


def run_workflow(checkout: Path, workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Like workflow_helpers.snakemake, on the snapshot. Targets go before --configfile."""
    result = subprocess.run(_command(checkout, workdir, args), capture_output=True, text=True, env=ENV,
                            timeout=540)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


def start_workflow(checkout: Path, workdir: Path, *args: str) -> subprocess.Popen:
    """Start snakemake in its own session, so that os.killpg reaches it and every job it started."""
    log = open(workdir / "killed_run.log", "w")
    try:
        return subprocess.Popen(_command(checkout, workdir, args), stdout=log, stderr=subprocess.STDOUT, env=ENV,
                                start_new_session=True)
    finally:
        log.close()


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def kill_group(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGKILL snakemake and every job it started; return once all of them are gone."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while _group_members(process.pid):
        assert time.monotonic() < deadline, f"processes of group {process.pid} survived SIGKILL"
        time.sleep(0.05)


def wait_until(condition, process: subprocess.Popen, workdir: Path, timeout: float, interval: float = 0.005):
    """Poll condition() until it returns something truthy; fail if snakemake exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if process.poll() is not None:
            tail = (workdir / "killed_run.log").read_text()[-4000:]
            raise AssertionError(f"snakemake exited (rc {process.returncode}) before the kill point:\n{tail}")
        if time.monotonic() > deadline:
            kill_group(process)
            raise AssertionError(f"kill point not reached within {timeout} s")
        time.sleep(interval)


# --- what a dry run plans -----------------------------------------------------------------------

JOB_HEADER = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
STATS_ROW = re.compile(r"^(\w+)\s+(\d+)$")


def job(rule: str, **wildcards: str) -> str:
    """A job as text, e.g. 'metrics[method=bicubic,profile=x2_noise,shard=000]' (sorted wildcards)."""
    return f"{rule}[{','.join(f'{k}={v}' for k, v in sorted(wildcards.items()))}]"


def planned_jobs(output: str) -> set[str]:
    """The jobs of a `snakemake -n` printout, checked against its job stats table."""
    jobs, stats, rule, wildcards = [], {}, None, {}
    lines = output.splitlines()
    for line in lines + [""]:
        header = JOB_HEADER.match(line)
        if header or (rule and not line.startswith("    ")):
            if rule:
                jobs.append(job(rule, **wildcards))
            rule, wildcards = (header.group(1), {}) if header else (None, {})
        elif rule and line.startswith("    wildcards: "):
            wildcards = dict(item.split("=", 1) for item in line.split(": ", 1)[1].split(", "))
    if "Job stats:" in lines:
        for line in lines[lines.index("Job stats:") + 3:]:
            row = STATS_ROW.match(line)
            if not row or row.group(1) == "total":
                break
            stats[row.group(1)] = int(row.group(2))
    counted = {}
    for name in jobs:
        counted[name.split("[")[0]] = counted.get(name.split("[")[0], 0) + 1
    assert counted == stats, f"job blocks {counted} disagree with the job stats table {stats}"
    assert len(set(jobs)) == len(jobs), "a job was listed twice"
    return set(jobs)


def dry_run(checkout: Path, workdir: Path, config: dict, *targets: str, name: str = "changed.yaml") -> set[str]:
    path = write_config(workdir, config, name)
    result = run_workflow(checkout, workdir, *targets, "--configfile", str(path), "-n")
    return planned_jobs(result.stdout + result.stderr)


# --- the expected jobs, computed from the config ---------------------------------------------------

def shard_ids(config) -> list[str]:
    return shards.shard_names(config["shards"])


def profiles(config) -> list[str]:
    return [p["name"] for p in config["degrade"]["profiles"]]


def methods_for(config, profile: str) -> list[str]:
    learned = [m["name"] for m in config["sr"]["models"]] if profile in config["sr"]["profiles"] else []
    return list(config["upscale"]["methods"]) + learned


def sr_output_jobs(config, method: str, profile: str, train: bool = True) -> set[str]:
    """The jobs that make and measure one SR output: train (learned models), infer/upscale, manifest, metrics."""
    learned = method in {m["name"] for m in config["sr"]["models"]}
    jobs = {job("manifest", output=f"sr/{method}/{profile}")}
    for shard in shard_ids(config):
        if learned:
            jobs.add(job("infer_sr", model=method, profile=profile, shard=shard))
        else:
            jobs.add(job("upscale", method=method, profile=profile, shard=shard))
        jobs.add(job("metrics", method=method, profile=profile, shard=shard))
    if learned and train:
        jobs.add(job("train_sr", model=method, profile=profile))
    return jobs


def profile_jobs(config, profile: str) -> set[str]:
    """A degradation profile and everything made from it (SR outputs, metrics), before aggregation."""
    jobs = {job("manifest", output=f"degrade/{profile}")}
    jobs |= {job("degrade", profile=profile, shard=shard) for shard in shard_ids(config)}
    for method in methods_for(config, profile):
        jobs |= sr_output_jobs(config, method, profile)
    return jobs


def summary_jobs(changed_profiles, training: bool = False) -> set[str]:
    """Aggregation, report and comparison viewer after SR outputs of changed_profiles changed."""
    jobs = {job("aggregate_metrics"), job("report"), job("viewer"), job("all")}
    jobs |= {job("plot_quality", profile=p) for p in changed_profiles}
    jobs |= {job("sample_grid", profile=p) for p in changed_profiles}
    if training:
        jobs.add(job("plot_training"))
    return jobs


def upstream_jobs(config) -> set[str]:
    jobs = {job("fetch"), job("inventory"), job("split"), job("fit_niqe")}
    jobs |= {job("manifest", output=o) for o in ("ingest", "crop_filter")}
    jobs |= {job("rejected", stage=s) for s in ("ingest", "crop_filter")}
    for shard in shard_ids(config):
        jobs |= {job(rule, shard=shard) for rule in ("ingest", "crop_filter", "hr_quality")}
    return jobs


def with_sr_lr(config):
    config["sr"]["models"][0]["lr"] = 0.002


def with_noise_sigma(config):
    profile = next(p for p in config["degrade"]["profiles"] if p["name"] == NOISY_PROFILE)
    profile["noise_sigma"] = [2, 5]


def with_new_model(config):
    config["sr"]["models"].append({"name": "srcnn", "arch": "srcnn", "epochs": 1, "steps_per_epoch": 5,
                                   "patch_size": 32, "lr": 0.001})


def with_new_profile(config):
    config["degrade"]["profiles"].append({"name": "x3_area", "scale": 3, "kernel": "area"})


def with_report_title(config):
    config["report"]["title"] = "tiny test run, retitled"


def expect_sr_lr(config):
    return sr_output_jobs(config, SR_MODEL, SR_PROFILE) | summary_jobs([SR_PROFILE], training=True)


def expect_noise_sigma(config):
    return profile_jobs(config, NOISY_PROFILE) | summary_jobs([NOISY_PROFILE], training=NOISY_PROFILE in config["sr"]["profiles"])


def expect_new_model(config):
    return sr_output_jobs(config, "srcnn", SR_PROFILE) | summary_jobs([SR_PROFILE], training=True)


def expect_new_profile(config):
    return profile_jobs(config, "x3_area") | summary_jobs(["x3_area"])


def expect_report_title(config):
    return {job("report"), job("viewer"), job("all")}  # the viewer's page is titled after the report


def with_classifier_lr(config):
    config["classify"]["experiments"][0]["lr"] = 0.0005


def expect_classifier_lr(config):
    name = config["classify"]["experiments"][0]["name"]
    jobs = {job("classification_summary"), job("report"), job("all")}
    for seed in config["classify"].get("seeds", [0]):
        jobs |= {job(rule, experiment=name, seed=str(seed)) for rule in ("train_classifier", "predict")}
    return jobs


CASES = {
    "a_sr_hyperparameter": (with_sr_lr, expect_sr_lr),
    "b_degradation_parameter": (with_noise_sigma, expect_noise_sigma),
    "c_new_model": (with_new_model, expect_new_model),
    "c_new_profile": (with_new_profile, expect_new_profile),
    "d_report_title": (with_report_title, expect_report_title),
    "a_classifier_hyperparameter": (with_classifier_lr, expect_classifier_lr),
}
NEEDS_CLASSIFIER = pytest.mark.skipif(CLASSIFIER is None, reason="this checkout has no classification experiments")


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_dir(checkout, tmp_path_factory) -> Path:
    """One complete tiny run; the tests below only dry-run in it or copy it."""
    workdir = tmp_path_factory.mktemp("rerun_base")
    config = write_config(workdir, BASE_CONFIG)
    run_workflow(checkout, workdir, "--configfile", str(config))
    return workdir


@pytest.fixture(scope="module")
def planned(checkout, run_dir):
    """Dry runs of each case against run_dir, memoised: {case: (config, expected, observed)}."""
    memo = {}

    def plan(case: str):
        if case not in memo:
            change, expect = CASES[case]
            config = copy.deepcopy(BASE_CONFIG)
            change(config)  # in place: key order stays that of TINY_CONFIG
            memo[case] = (config, expect(config), dry_run(checkout, run_dir, config, name=f"{case}.yaml"))
        return memo[case]

    return plan


# --- partial reruns -------------------------------------------------------------------------------

@pytest.mark.parametrize("case", [pytest.param(c, marks=NEEDS_CLASSIFIER) if "classifier" in c else c for c in CASES])
def test_config_change_reruns_exactly_the_affected_jobs(planned, case):
    config, expected, observed = planned(case)
    assert observed == expected
    assert not observed & upstream_jobs(config)


@pytest.mark.parametrize("case, changed", [("a_sr_hyperparameter", (SR_MODEL, SR_PROFILE)),
                                           ("b_degradation_parameter", (None, NOISY_PROFILE))])
def test_other_methods_and_profiles_are_untouched(planned, case, changed):
    """The spelled-out half of the exact check: no other SR output, degradation or upstream job."""
    config, _, observed = planned(case)
    changed_method, changed_profile = changed
    for profile in profiles(config):
        if profile != changed_profile:
            assert not profile_jobs(config, profile) & observed, profile
            continue
        for method in methods_for(config, profile):
            if changed_method and method != changed_method:
                assert not sr_output_jobs(config, method, profile) & observed, (method, profile)
    assert not observed & upstream_jobs(config)


@pytest.mark.parametrize("case", ["a_sr_hyperparameter", "b_degradation_parameter", "c_new_model", "c_new_profile"])
def test_quality_plots_rerun_only_for_changed_profiles(planned, case):
    _, expected, observed = planned(case)
    assert observed == expected


def test_inference_only_setting_does_not_retrain(checkout, run_dir):
    config = copy.deepcopy(BASE_CONFIG)
    config["sr"]["tile"] = 8
    observed = dry_run(checkout, run_dir, config, name="tile.yaml")
    expected = summary_jobs([SR_PROFILE])
    for model in config["sr"]["models"]:
        for profile in config["sr"]["profiles"]:
            expected |= sr_output_jobs(config, model["name"], profile, train=False)
    assert observed == expected


def _reordered(value):
    """The same config with the keys of every mapping in reverse order."""
    if isinstance(value, dict):
        return {key: _reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(item) for item in value]
    return value


def test_same_config_with_keys_in_another_order_plans_nothing(checkout, run_dir):
    assert dry_run(checkout, run_dir, _reordered(copy.deepcopy(BASE_CONFIG)), name="reordered.yaml") == set()


# --- reproducibility across shard counts ------------------------------------------------------------

def _lr_images(workdir: Path, profile: str) -> dict[str, bytes]:
    images = {}
    for path in sorted((workdir / "results/degrade" / profile / "shards").glob("[0-9]*.parquet")):
        meta, pixels = shards.read_shard(path)
        images.update({image_id: image.tobytes() for image_id, image in zip(meta["image_id"], pixels)})
    return images


def test_split_and_degradation_do_not_depend_on_the_shard_count(checkout, run_dir, tmp_path):
    config = copy.deepcopy(BASE_CONFIG)
    config["shards"] = 3
    path = write_config(tmp_path, config)
    run_workflow(checkout, tmp_path, f"results/degrade/{NOISY_PROFILE}/manifest.parquet", "--configfile", str(path))

    def table(workdir, rel, columns):
        return shards.read_table(workdir / "results" / rel)[["image_id", *columns]].set_index("image_id").sort_index()

    two, three = table(run_dir, "split/manifest.parquet", ["split", "shard"]), table(tmp_path, "split/manifest.parquet", ["split", "shard"])
    assert two["shard"].nunique() == 2 and three["shard"].nunique() == 3  # the layouts really differ
    assert two["split"].equals(three["split"])
    drawn = ["blur_sigma", "noise_sigma", "jpeg_quality"]
    lr_two = table(run_dir, f"degrade/{NOISY_PROFILE}/manifest.parquet", drawn)
    lr_three = table(tmp_path, f"degrade/{NOISY_PROFILE}/manifest.parquet", drawn)
    assert len(lr_two) == len(two) and lr_two["noise_sigma"].nunique() > 1
    assert lr_two.equals(lr_three)
    assert _lr_images(run_dir, NOISY_PROFILE) == _lr_images(tmp_path, NOISY_PROFILE)


# --- faults through the workflow -----------------------------------------------------------------------

def test_killed_training_resumes_from_its_checkpoint(checkout, run_dir, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(run_dir, workdir, symlinks=True)  # upstream outputs and their metadata, mtimes kept
    checkpoints = workdir / f"results/checkpoints/{SR_MODEL}/{SR_PROFILE}"
    shutil.rmtree(checkpoints)  # written for the fixture's config; this run must write its own
    config = copy.deepcopy(BASE_CONFIG)
    model = config["sr"]["models"][0]
    model.update(epochs=2, steps_per_epoch=5, checkpoint_every=1)
    path = write_config(workdir, config, "long.yaml")
    target = f"results/models/{SR_MODEL}/{SR_PROFILE}/model.safetensors"

    process = start_workflow(checkout, workdir, target, "--configfile", str(path))
    try:
        wait_until(lambda: (checkpoints / "last.pt").exists(), process, workdir, timeout=240)
    finally:
        kill_group(process)
    saved_step = torch.load(checkpoints / "last.pt", map_location="cpu", weights_only=True)["step"]
    assert 0 < saved_step < model["epochs"] * model["steps_per_epoch"]

    # SIGKILL leaves Snakemake's lock behind; --unlock is the documented way out of it.
    run_workflow(checkout, workdir, target, "--unlock", "--configfile", str(path))
    run_workflow(checkout, workdir, target, "--rerun-incomplete", "--configfile", str(path))
    log = (workdir / f"results/logs/train_sr/{SR_MODEL}/{SR_PROFILE}.log").read_text()
    resumed = re.findall(r"resuming from (\S+) at step (\d+)", log)
    assert resumed == [(f"results/checkpoints/{SR_MODEL}/{SR_PROFILE}/last.pt", str(saved_step))], log
    history = shards.read_table(workdir / f"results/models/{SR_MODEL}/{SR_PROFILE}/history.parquet")
    assert list(history["epoch"]) == list(range(1, model["epochs"] + 1))
    assert list(history["step"]) == [e * model["steps_per_epoch"] for e in range(1, model["epochs"] + 1)]
    assert history["best"].sum() == 1


def _parquet_files(workdir: Path, *stages: str) -> dict[str, Path]:
    """Declared parquet outputs of stages (hidden .tmp-* leftovers of killed writes excluded)."""
    return {str(p.relative_to(workdir)): p for stage in stages for p in (workdir / "results" / stage).rglob("*.parquet")
            if not p.name.startswith(".")}


def test_stage_killed_while_writing_leaves_nothing_mistaken_for_complete(checkout, run_dir, tmp_path):
    # The fixture's run without its crop_filter and split outputs: ingest is complete and recorded.
    workdir = tmp_path / "run"
    shutil.copytree(run_dir, workdir, symlinks=True)
    for stage in ("crop_filter", "split"):
        shutil.rmtree(workdir / "results" / stage)
    path = workdir / "config.yaml"
    targets = ["results/split/manifest.parquet", "results/crop_filter/rejected.parquet"]
    out_dirs = [workdir / "results/crop_filter" / d for d in ("shards", "rejected")]

    def first_write():  # mkstemp makes the .tmp-* file before the shard is written into it
        return [p.name for d in out_dirs if d.is_dir() for p in d.iterdir()]

    process = start_workflow(checkout, workdir, *targets, "--configfile", str(path))
    try:
        seen = wait_until(first_write, process, workdir, timeout=180)
    finally:
        kill_group(process)
    print("killed on seeing", seen)  # shown with -s: a .tmp-* name means mid-write

    # Every output file present reads whole; leftovers of interrupted writes have hidden names.
    for file in _parquet_files(workdir, "ingest", "crop_filter", "split").values():
        pq.read_table(file)
    for d in out_dirs:
        assert all(re.fullmatch(r"\d{3}\.parquet|\.\d{3}\.parquet\.tmp-\w+", p.name) for p in d.iterdir())

    # The plan after the kill: crop_filter of every shard whose outputs are not complete, and what
    # follows; nothing upstream. An output the plan leaves alone equals the clean run's.
    planned = dry_run(checkout, workdir, BASE_CONFIG, *targets, name="config.yaml")
    cropped = {job("crop_filter", shard=s) for s in shard_ids(BASE_CONFIG)}
    print("planned after the kill:", sorted(planned))
    assert planned - cropped == {job("manifest", output="crop_filter"), job("rejected", stage="crop_filter"),
                                 job("split")}
    for shard in shard_ids(BASE_CONFIG):
        if job("crop_filter", shard=shard) in planned:
            continue
        for folder in ("shards", "rejected"):
            output, clean = (d / f"results/crop_filter/{folder}/{shard}.parquet" for d in (workdir, run_dir))
            assert output.exists() and output.read_bytes() == clean.read_bytes(), \
                f"{output} is missing or incomplete, yet crop_filter {shard} is not planned"
    assert planned & cropped, "the kill came after crop_filter finished"

    run_workflow(checkout, workdir, *targets, "--unlock", "--configfile", str(path))
    run_workflow(checkout, workdir, *targets, "--configfile", str(path))
    files = _parquet_files(workdir, "ingest", "crop_filter", "split")
    clean = _parquet_files(run_dir, "ingest", "crop_filter", "split")
    assert set(files) == set(clean) and len(files) >= 10
    assert [rel for rel in files if files[rel].read_bytes() != clean[rel].read_bytes()] == []
