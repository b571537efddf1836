"""Slurm: the workflow submitted by the literal `snakemake --profile slurm`, on a real cluster.

profiles/slurm is installed the way docs/cluster.md describes, as a symlink
$XDG_CONFIG_HOME/snakemake/slurm -> profiles/slurm, under a temporary XDG_CONFIG_HOME. A second
profile (written per test session, see overlay()) adds only what this test cluster and a fast
test need: the partition, squeue for status polling (no Slurm accounting here), short polling
and latency waits, and keeping the Slurm logs of successful jobs so the test can look at them.

The cluster tests need the single-node cluster of tests/slurm/start.sh (.ci/run starts it) and
skip, saying so, when there is none; they install nothing. Three runs go at the same time, as
most of a Slurm run is waiting: the tiny pipeline through Slurm, the same config run locally
(the reference for byte-identical outputs), and a two-rule workflow for the GPU and time-limit
checks. Together about 4 minutes on 2 cores; the dry-run test needs no cluster.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from workflow_helpers import REPO, TINY_CONFIG, skip_or_fail, snakemake, write_config

pytestmark = pytest.mark.slow

PARTITION = os.environ.get("SLURM_TEST_PARTITION", "debug")
GPU_PARTITION = os.environ.get("SLURM_TEST_GPU_PARTITION", "gpu")
GPU_MODEL = os.environ.get("SLURM_TEST_GPU_TYPE", "fake")  # the GPU type start.sh gives its fake GPUs
RUN_TIMEOUT = 1200  # seconds for one Snakemake run through Slurm
UP_STATES = {"idle", "mixed", "allocated", "completing"}
GPU_RULES = {"train_features", "train_sr", "infer_sr", "train_classifier"}
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: ([^)]+)\)")

# A two-rule workflow for what the tiny pipeline does not exercise: its GPU rules only run with
# learned models configured (and then want 4 CPUs per GPU and minutes of training), and none of
# its jobs runs into a time limit. `slow`: attempt 1 asks for 1 minute and sleeps past it, so
# Slurm kills it (state TIMEOUT); Snakemake resubmits it as attempt 2 with 2 minutes. A real job
# would take the same time on both attempts, between the ~90 s at which Slurm is sure to have
# killed attempt 1 (it checks limits every 30 s) and 2 minutes: about 4 minutes for the test.
# Sleeping on attempt 1 only tests the same thing (the kill, the TIMEOUT state, the retry, the
# longer -t) in half the time. `train_sr`: a GPU rule, whose partition and GPU model come from
# set-resources in a profile, as in profiles/slurm's commented example.
SMALL_SNAKEFILE = r"""
rule all:
    input:
        "slow.txt",
        "gpu.txt",


rule slow:
    output:
        "slow.txt",
    resources:
        runtime=lambda wildcards, attempt: attempt,
    shell:
        "if [ {resources.runtime} -lt 2 ]; then sleep 600; fi; "
        "echo runtime={resources.runtime} slurm_job=$SLURM_JOB_ID > {output}"


rule train_sr:
    output:
        "gpu.txt",
    resources:
        gpu=1,
        runtime=5,
    shell:
        "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES slurm_job=$SLURM_JOB_ID > {output}"
"""


def cluster_problem() -> str | None:
    """Why the test cluster cannot take jobs, or None when it can."""
    start = "start it with tests/slurm/start.sh (as root)"
    if shutil.which("sinfo") is None:
        return f"Slurm is not installed here (no sinfo on PATH): {start}"
    try:
        result = subprocess.run(["sinfo", "-h", "-o", "%R %a %T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return f"the Slurm controller does not answer (sinfo timed out): {start}"
    if result.returncode != 0:
        return f"the Slurm cluster is not up (sinfo: {result.stderr.strip()}): {start}"
    rows = [line.split() for line in result.stdout.splitlines() if len(line.split()) == 3]
    for partition in (PARTITION, GPU_PARTITION):
        if not any(row[0] == partition for row in rows):
            return (f"Slurm has no partition {partition!r} (SLURM_TEST_PARTITION, SLURM_TEST_GPU_PARTITION "
                    f"name the test cluster's): {start}")
        if not any(row[0] == partition and row[1] == "up" and row[2] in UP_STATES for row in rows):
            return f"no node of partition {partition!r} is up ({result.stdout.strip()}): {start}"
    return None


def install_profile(root: Path) -> Path:
    """profiles/slurm installed as docs/cluster.md says: an XDG_CONFIG_HOME with the symlink."""
    xdg = root / "xdg"
    (xdg / "snakemake").mkdir(parents=True)
    (xdg / "snakemake" / "slurm").symlink_to(REPO / "profiles" / "slurm", target_is_directory=True)
    return xdg


def overlay(root: Path, set_resources: dict | None = None) -> Path:
    """A second profile with what the test cluster and a fast test need on top of profiles/slurm.
    default-resources is replaced as a whole by a later profile, so it starts from the profile's."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    settings = {
        # This cluster's partition; the account stays empty (no accounting here).
        "default-resources": {**profile["default-resources"], "slurm_partition": PARTITION, "slurm_account": ""},
        # No slurmdbd: sacct cannot answer (start.sh sets MinJobAge=3600 for squeue).
        "slurm-status-command": "squeue",
        # Poll 1 s after submitting and after each finished job (the plugin backs off by 10 s).
        "slurm-init-seconds-before-status-checks": 1,
        "latency-wait": 5,
        # Keep the Slurm logs of successful jobs too, to check them.
        "slurm-keep-successful-logs": True,
    }
    if set_resources:
        settings["set-resources"] = set_resources
    path = root / "test-overlay"
    path.mkdir()
    (path / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def environment(xdg: Path) -> dict:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SLURM_", "SBATCH_", "SRUN_")) and key != "SNAKEMAKE_PROFILE"}
    # `snakemake` is the console script of the interpreter running the tests.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(XDG_CONFIG_HOME=str(xdg), PYTHONHASHSEED="0")
    return env


class Run:
    """`snakemake --profile slurm --profile <overlay> ...` in workdir, in the background."""

    def __init__(self, workdir: Path, xdg: Path, overlay_dir: Path, *args: str):
        self.workdir = workdir
        self.command = ["snakemake", "--profile", "slurm", "--profile", str(overlay_dir), *args]
        self.log = workdir / "snakemake-slurm.out"
        self.returncode = None
        self.seconds = None
        self.started = time.monotonic()
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(self.command, cwd=workdir, env=environment(xdg),
                                            stdout=out, stderr=subprocess.STDOUT, text=True)
        self._done = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        self.process.wait()
        self.seconds = time.monotonic() - self.started
        self._done.set()

    def wait(self) -> "Run":
        if self.returncode is None:
            if self._done.wait(max(0.0, RUN_TIMEOUT - (time.monotonic() - self.started))):
                self.returncode = self.process.returncode
            else:
                self.process.send_signal(signal.SIGINT)  # Snakemake cancels its Slurm jobs
                try:
                    self.process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
                ids = self.slurm_ids()
                if ids:
                    subprocess.run(["scancel", *ids], capture_output=True)
                self.returncode = f"killed after {RUN_TIMEOUT}s"
                self.seconds = time.monotonic() - self.started
        return self

    @property
    def output(self) -> str:
        return self.log.read_text()

    def submissions(self) -> list[tuple[str, str, Path]]:
        """(Snakemake job id, Slurm job id, Slurm log) of every sbatch submission."""
        return [(job, slurm, Path(log)) for job, slurm, log in SUBMITTED.findall(self.output)]

    def slurm_ids(self) -> list[str]:
        return [slurm for _, slurm, _ in self.submissions()]

    def check(self):
        assert self.returncode == 0, (
            f"{' '.join(self.command)} (in {self.workdir}) ended with {self.returncode} after "
            f"{self.seconds:.0f}s:\n{self.output[-6000:]}")


def slurm_job(job_id: str) -> dict:
    """What slurmctld still knows about a job (start.sh: MinJobAge=3600 keeps finished jobs an hour)."""
    result = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    assert result.returncode == 0, f"scontrol show job {job_id}: {result.stderr}"
    return dict(re.findall(r"(\w+)=(\S*)", result.stdout))


def result_tables(root: Path) -> list[Path]:
    """Manifests, shards, metric and report tables: every .parquet and .csv of a run."""
    skip = {"benchmarks", "logs"}
    return sorted(p.relative_to(root) for p in (root / "results").rglob("*")
                  if p.suffix in {".parquet", ".csv"} and not skip & set(p.relative_to(root).parts))


@pytest.fixture(scope="module")
def cluster():
    problem = cluster_problem()
    if problem:
        skip_or_fail(problem)


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """Start the three runs together, wait for all; each test then checks its own."""
    root = tmp_path_factory.mktemp("slurm")
    xdg = install_profile(root)

    pipeline_dir = root / "pipeline"
    pipeline_dir.mkdir()
    write_config(pipeline_dir, copy.deepcopy(TINY_CONFIG))
    pipeline = Run(pipeline_dir, xdg, overlay(root),
                   "--snakefile", str(REPO / "workflow/Snakefile"), "--configfile", "config.yaml")

    small_dir = root / "small"
    small_dir.mkdir()
    (small_dir / "Snakefile").write_text(SMALL_SNAKEFILE)
    small_overlay_root = root / "small-profile"
    small_overlay_root.mkdir()
    small = Run(small_dir, xdg, overlay(small_overlay_root,
                                        {"train_sr": {"slurm_partition": GPU_PARTITION, "gpu_model": GPU_MODEL}}))

    # The local reference run, meanwhile (most of a Slurm run is waiting for polls).
    local_dir = root / "local"
    local_dir.mkdir()
    started = time.monotonic()
    local = snakemake(local_dir, "--configfile", str(write_config(local_dir, TINY_CONFIG)), check=False)
    local_seconds = time.monotonic() - started
    pipeline.wait()
    small.wait()
    print(f"\nslurm pipeline run {pipeline.seconds:.0f}s, small workflow {small.seconds:.0f}s, "
          f"local run {local_seconds:.0f}s")
    return {"pipeline": pipeline, "small": small, "local": local, "local_dir": local_dir, "xdg": xdg}


def test_profile_dry_runs_without_a_cluster(tmp_path):
    """The profile parses, is found by name, and gives every job its default resources."""
    xdg = install_profile(tmp_path)
    write_config(tmp_path, TINY_CONFIG)
    result = subprocess.run(["snakemake", "--profile", "slurm", "--snakefile", str(REPO / "workflow/Snakefile"),
                             "--configfile", "config.yaml", "-n"],
                            cwd=tmp_path, env=environment(xdg), capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Using profiles slurm and workflow specific profile" in output
    jobs = re.findall(r"^rule (\w+):\n(?:\s+\w+: .*\n)*?\s+resources: (.*)$", output, re.M)
    assert len(jobs) > 30
    for rule, resources in jobs:
        assert "slurm_partition=," in resources and "slurm_account=," in resources, (rule, resources)
        assert re.search(r"mem_mb=(\d+|<TBD>)", resources), (rule, resources)
        if rule not in GPU_RULES:  # these declare their own runtime
            assert "runtime=60" in resources, (rule, resources)
    resources = [resources for _, resources in jobs]
    # profiles/default (the workflow profile) still sets the rules' memory.
    assert any("mem_mb=2000" in line for line in resources)


def test_pipeline_jobs_went_through_sbatch(runs):
    pipeline = runs["pipeline"]
    pipeline.check()
    output = pipeline.output
    assert "Using profiles slurm and " in output
    steps = re.search(r"(\d+) of \1 steps \(100%\) done", output)
    assert steps, output[-3000:]
    submissions = pipeline.submissions()
    # Every job but the localrules (bookkeeping, fetch, report and the target rule `all`) was
    # submitted once, with sbatch.
    local = re.findall(r"^localrule (\w+):", output, re.M)
    assert {"all", "fetch", "report", "manifest"} <= set(local)
    assert len(submissions) == int(steps.group(1)) - len(local) > 25
    ids = [slurm for _, slurm, _ in submissions]
    assert len(set(ids)) == len(ids)
    logdir = pipeline.workdir / ".snakemake" / "slurm_logs"
    for _, slurm, log in submissions:
        assert log.is_file() and log.name == f"{slurm}.log" and logdir in log.parents, log
        job = slurm_job(slurm)
        assert job["JobState"] == "COMPLETED", job
        assert job["Partition"] == PARTITION, job
        assert job["WorkDir"] == str(pipeline.workdir), job
        if log.relative_to(logdir).parts[0].removeprefix("rule_") not in GPU_RULES:
            assert job["TimeLimit"] == "01:00:00", job  # the profile's default runtime, attempt 1
    rules = {log.relative_to(logdir).parts[0] for _, _, log in submissions}
    assert {"rule_ingest", "rule_crop_filter", "rule_degrade", "rule_upscale", "rule_metrics", "rule_train_sr",
            "rule_train_classifier"} <= rules
    # After a cluster run there is nothing left to do, also by the profile's rerun triggers.
    again = subprocess.run(["snakemake", "--profile", "slurm", "--snakefile", str(REPO / "workflow/Snakefile"),
                            "--configfile", "config.yaml", "-n"],
                           cwd=pipeline.workdir, env=environment(runs["xdg"]), capture_output=True, text=True)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:] + again.stderr[-3000:]


def test_slurm_outputs_match_a_local_run(runs):
    runs["pipeline"].check()
    local = runs["local"]
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-6000:]
    slurm_dir, local_dir = runs["pipeline"].workdir, runs["local_dir"]
    tables = result_tables(slurm_dir)
    assert len(tables) > 40
    assert tables == result_tables(local_dir)
    for manifest in ("ingest", "crop_filter", "split"):
        assert Path(f"results/{manifest}/manifest.parquet") in tables
    assert Path("results/metrics/per_image.parquet") in tables and Path("results/metrics/summary.csv") in tables
    different = [str(p) for p in tables if (slurm_dir / p).read_bytes() != (local_dir / p).read_bytes()]
    assert different == []


def test_gpu_rule_gets_its_partition_and_gpu_model_from_set_resources(runs):
    small = runs["small"]
    small.check()
    gpu_jobs = [slurm for _, slurm, log in small.submissions() if "rule_train_sr" in log.parts]
    assert len(gpu_jobs) == 1
    job = slurm_job(gpu_jobs[0])
    assert job["Partition"] == GPU_PARTITION and job["TresPerJob"] == f"gres:gpu:{GPU_MODEL}:1", job
    text = (small.workdir / "gpu.txt").read_text()
    assert re.search(r"CUDA_VISIBLE_DEVICES=\d", text), text  # the job's process sees its GPU


def test_job_over_its_runtime_is_retried_with_a_longer_one(runs):
    small = runs["small"]
    small.check()
    slow = [slurm for _, slurm, log in small.submissions() if "rule_slow" in log.parts]
    assert len(slow) == 2, small.output[-4000:]
    first, second = (slurm_job(j) for j in slow)
    assert (first["JobState"], first["TimeLimit"], first["Reason"]) == ("TIMEOUT", "00:01:00", "TimeLimit"), first
    assert (second["JobState"], second["TimeLimit"]) == ("COMPLETED", "00:02:00"), second
    assert f"SLURM-job '{slow[0]}' failed, SLURM status is: 'TIMEOUT'" in small.output
    assert (small.workdir / "slow.txt").read_text().split() == ["runtime=2", f"slurm_job={slow[1]}"]
