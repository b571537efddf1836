"""Killed jobs and untrusted files (cases 13-16 of docs/bad-input.md).

* kill -9 while a stage writes a shard: the rerun never reads a half-written file;
* training killed mid-epoch: the rerun resumes from the last checkpoint and ends where an
  uninterrupted run ends;
* checkpoints that pickle Python objects are refused by every loader, never unpickled;
* no shell command is built from config strings.
"""

from __future__ import annotations

import ast
import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from karyosr import engine, weights
from karyosr.classify import backbones as classifiers
from karyosr.io import shards
from karyosr.sr import archs, infer as sr_infer, train as sr_train

REPO = Path(__file__).resolve().parents[1]
SHARD_NAME = re.compile(r"\d{3}\.parquet")  # the rules' output names: wildcard_constraints shard=\d{3}


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the process ended (rc {proc.returncode}) before {what}:\n{out[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


# --------------------------------------------------------------------------- case 13: kill -9 while writing a shard

WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    import pandas as pd
    from karyosr.io import shards

    path, n = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)  # incompressible, so the file grows page by page
    images = [rng.integers(0, 65535, (256, 256), dtype=np.uint16) for _ in range(n)]
    meta = pd.DataFrame({"image_id": [f"d/g/{i:05d}" for i in range(n)], "label": pd.array([i % 24 for i in range(n)], dtype="Int8")})
    shards.write_shard(path, meta, images)
""")
N_BIG = 400  # about 50 MB: the write takes a second or more


def _small_shard(path: Path) -> None:
    meta = pd.DataFrame({"image_id": ["d/g/old0", "d/g/old1"], "label": pd.array([0, 1], dtype="Int8")})
    shards.write_shard(path, meta, [np.zeros((8, 8), np.uint8), np.ones((8, 8), np.uint8)])


@pytest.mark.parametrize("previous", [False, True], ids=["new-file", "overwrite"])
def test_kill_9_while_writing_a_shard_leaves_no_partial_output(tmp_path, previous):
    folder = tmp_path / "results/ingest/shards"
    folder.mkdir(parents=True)
    target = folder / "000.parquet"
    if previous:
        _small_shard(target)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(target), str(N_BIG)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def partial():
        return [p for p in folder.glob(".000.parquet.tmp-*") if p.stat().st_size > 1_000_000]

    try:
        _wait_for(lambda: bool(partial()), proc, "the shard's temporary file grew")
    finally:
        _kill(proc)

    # The target is absent (or, overwriting, still the complete old shard): never the partial data.
    if previous:
        meta, images = shards.read_shard(target)
        assert list(meta["image_id"]) == ["d/g/old0", "d/g/old1"] and len(images) == 2
    else:
        assert not target.exists()
    leftovers = [p for p in folder.iterdir() if p != target]
    assert leftovers and all(p.name.startswith(".000.parquet.tmp-") for p in leftovers)
    for leftover in leftovers:
        # What a reader would have got, had the partial file been renamed: not a shard at all.
        with pytest.raises(Exception):
            pq.read_table(leftover)
        # Not a name any rule declares, so Snakemake never takes it for the output.
        assert not SHARD_NAME.fullmatch(leftover.name)
    # The manifest only reads declared shard paths; the rerun writes the whole shard atomically.
    assert [p.name for p in folder.glob("[0-9][0-9][0-9].parquet")] == (["000.parquet"] if previous else [])
    meta = pd.DataFrame({"image_id": ["d/g/new"], "label": pd.array([3], dtype="Int8")})
    shards.write_shard(target, meta, [np.full((16, 16), 7, np.uint16)])
    manifest = shards.build_manifest([target], tmp_path / "results/ingest/manifest.parquet")
    assert list(manifest["image_id"]) == ["d/g/new"]


# --------------------------------------------------------------------------- case 14: training killed mid-epoch

TASK = textwrap.dedent("""
    import sys
    import time
    from pathlib import Path

    import torch
    from torch import nn

    from karyosr import engine, logs

    EPOCHS, STEPS, EVERY = 3, 10, 3


    class TinyTask:
        def __init__(self, delay=0.0):
            self.delay = delay
            g = torch.Generator().manual_seed(0)
            self.x = torch.randn(64, 4, generator=g)
            self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
            self.model = nn.Linear(4, 1)
            with torch.no_grad():
                self.model.weight.zero_()
                self.model.bias.zero_()
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.05)

        def modules(self):
            return {"model": self.model}

        def optimizers(self):
            return {"model": self.optimizer}

        def train_step(self, step):
            time.sleep(self.delay)
            idx = torch.randint(0, 64, (8,))  # from torch's global generator, which checkpoints carry
            loss = ((self.model(self.x[idx]) - self.y[idx]) ** 2).mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            return {"loss": float(loss.detach())}

        def validate(self):
            return {"val_psnr": -float(((self.model(self.x) - self.y) ** 2).mean())}

        def export(self):
            return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


    def settings(checkpoint_dir):
        return engine.FitSettings(epochs=EPOCHS, steps_per_epoch=STEPS, checkpoint_dir=Path(checkpoint_dir),
                                  config_slice={"task": "tiny"}, checkpoint_every=EVERY, progress=False)


    def train(checkpoint_dir, delay=0.0):
        torch.manual_seed(0)
        return engine.fit(TinyTask(delay), settings(checkpoint_dir))


    if __name__ == "__main__":
        logs.setup()
        train(sys.argv[1], delay=float(sys.argv[2]))
""")


@pytest.fixture
def tiny_task(tmp_path):
    path = tmp_path / "tiny_task.py"
    path.write_text(TASK)
    namespace: dict = {"__name__": "tiny_task"}
    exec(compile(TASK, str(path), "exec"), namespace)
    return path, namespace


def test_training_killed_mid_epoch_resumes_from_the_last_checkpoint(tmp_path, tiny_task, caplog):
    script, task = tiny_task
    checkpoints = tmp_path / "checkpoints"
    proc = subprocess.Popen([sys.executable, str(script), str(checkpoints), "0.25"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for((checkpoints / "last.pt").exists, proc, "the first checkpoint")
    finally:
        _kill(proc)
    saved = engine.load_checkpoint(checkpoints / "last.pt")["step"]
    steps = task["STEPS"]
    assert 0 < saved < task["EPOCHS"] * steps and saved % steps, f"killed at step {saved}, not mid-epoch"

    with caplog.at_level(logging.INFO, logger="karyosr.engine"):
        resumed = task["train"](checkpoints)
    assert resumed.resumed_from_step == saved
    assert f"resuming from {checkpoints / 'last.pt'} at step {saved}" in caplog.text
    assert list(resumed.history["epoch"]) == [1, 2, 3]
    assert engine.load_checkpoint(checkpoints / "last.pt")["step"] == task["EPOCHS"] * steps

    # The same model as a run that was never interrupted: the checkpoint carried weights, optimiser
    # and random state. (The killed epoch's mean training loss covers only the steps after the resume.)
    reference = task["train"](tmp_path / "reference")
    assert reference.resumed_from_step == 0
    for key, value in reference.export.items():
        torch.testing.assert_close(resumed.export[key], value, rtol=0, atol=0)
    np.testing.assert_array_equal(resumed.history["val_psnr"], reference.history["val_psnr"])


def test_checkpoint_of_another_config_is_not_resumed(tmp_path, tiny_task, caplog):
    _, task = tiny_task
    checkpoints = tmp_path / "checkpoints"
    task["train"](checkpoints)
    settings = task["settings"](checkpoints)
    settings.config_slice = {"task": "tiny", "lr": "changed"}
    torch.manual_seed(0)
    with caplog.at_level(logging.INFO, logger="karyosr.engine"):
        result = engine.fit(task["TinyTask"](), settings)
    assert result.resumed_from_step == 0 and "written for a different config" in caplog.text


# --------------------------------------------------------------------------- case 15: pickled payloads


class _Evil:
    """Unpickling this runs open(marker, 'w'): a stand-in for os.system."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious(path: Path, kind: str, marker: Path) -> Path:
    if kind == "torch-custom-object":
        torch.save({"state_dict": {"weight": torch.zeros(2)}, "extra": _Evil(marker)}, path)
    elif kind == "torch-os-system":
        torch.save({"x": os.system, "weight": torch.zeros(2)}, path)
    else:  # a plain (legacy-format) pickle, as pickle.dump writes it
        with open(path, "wb") as fh:
            pickle.dump({"x": _Evil(marker)}, fh)
    return path


KINDS = ["torch-custom-object", "torch-os-system", "plain-pickle"]
# torch warns that a protocol-4 plain pickle is not what it writes; it refuses the file anyway.
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")


def _assert_refused(exc: BaseException, path: Path, marker: Path) -> None:
    message = str(exc)
    assert str(path) in message
    assert "refused to load with weights_only=True" in message or "not a readable torch weights file" in message
    assert not marker.exists(), "the payload was unpickled"


@pytest.mark.parametrize("kind", KINDS)
def test_pickled_payload_refused_by_load_weights(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = _malicious(tmp_path / "weights.pth", kind, marker)
    for load in (lambda: archs.load_weights(archs.build_sr("srcnn", 2), path),
                 lambda: classifiers.load_weights(classifiers.build_backbone("dcnn", width=0.25), path),
                 lambda: weights.load_checkpoint(path)):
        with pytest.raises(ValueError) as info:
            load()
        _assert_refused(info.value, path, marker)
    if kind != "plain-pickle":
        assert "refused to load with weights_only=True" in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_malicious_last_checkpoint_is_refused_not_resumed(tmp_path, tiny_task, kind):
    """A last.pt planted in the checkpoint folder must not be unpickled by the resume path."""
    _, task = tiny_task
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    marker = tmp_path / "pwned"
    last = _malicious(checkpoints / "last.pt", kind, marker)
    with pytest.raises(ValueError) as info:
        task["train"](checkpoints)
    _assert_refused(info.value, last, marker)


@pytest.mark.parametrize("kind", KINDS)
def test_malicious_init_from_is_refused(tmp_path, kind):
    """sr.models[].init_from (a user's weights file) and init_from_model / trained models."""
    marker = tmp_path / "pwned"
    path = _malicious(tmp_path / "pretrained.pth", kind, marker)
    with pytest.raises(ValueError) as info:
        sr_train.build_model({"name": "m", "arch": "srcnn", "options": {}, "init_from": str(path)}, 2)
    _assert_refused(info.value, path, marker)
    with pytest.raises(ValueError) as info:
        sr_infer.load_model(path)
    _assert_refused(info.value, path, marker)


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _python_sources():
    files = sorted([*(REPO / "src").rglob("*.py"), *(REPO / "workflow").rglob("*.py")])
    assert len(files) > 20
    return [(f, ast.parse(f.read_text(), str(f))) for f in files]


def _workflow_sources():
    files = sorted([REPO / "workflow/Snakefile", *(REPO / "workflow").rglob("*.smk")])
    assert len(files) > 5
    return [(f, f.read_text()) for f in files]


def test_every_torch_load_is_weights_only_and_nothing_unpickles():
    offenders = []
    for path, tree in _python_sources():
        for call, name in _calls(tree):
            where = f"{path.relative_to(REPO)}:{call.lineno}"
            if name.endswith("torch.load"):
                flag = {k.arg: k.value for k in call.keywords}.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    offenders.append(f"{where}: {ast.unparse(call)} without weights_only=True")
            if re.fullmatch(r"(c?pickle|dill|joblib|cloudpickle|_pickle)\.(load|loads|Unpickler)|"
                            r"(pd|pandas)\.read_pickle|torch\.jit\.load", name):
                offenders.append(f"{where}: {ast.unparse(call)}")
            if name.endswith(("np.load", "numpy.load")):
                flag = {k.arg: k.value for k in call.keywords}.get("allow_pickle")
                if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                    offenders.append(f"{where}: {ast.unparse(call)}")
        for node in ast.walk(tree):  # `from torch import load` or `from pickle import load` would hide the name
            if isinstance(node, ast.ImportFrom) and node.module in ("torch", "pickle", "dill", "joblib"):
                if any(alias.name in ("load", "loads", "Unpickler") for alias in node.names):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    for path, text in _workflow_sources():
        for match in re.finditer(r"torch\.load\(([^()]|\([^()]*\))*\)", text):
            if "weights_only=True" not in match.group(0):
                offenders.append(f"{path.relative_to(REPO)}: {match.group(0)}")
        if re.search(r"\bpickle\.load|read_pickle", text):
            offenders.append(f"{path.relative_to(REPO)}: unpickles")
    assert not offenders, "\n".join(offenders)
    # and the one place that does load checkpoints really passes the flag
    assert "torch.load(path, map_location=\"cpu\", weights_only=True)" in (REPO / "src/karyosr/weights.py").read_text()


# --------------------------------------------------------------------------- case 16: no shell built from config


def test_no_rule_pastes_config_into_a_shell():
    """Rules run Python through script:, never shell: or shell(); and no Python code of the
    package or the scripts starts a shell (os.system, os.popen, shell=True)."""
    for path, text in _workflow_sources():
        code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        assert not re.search(r"^\s*shell\s*:", code, re.M), f"{path}: a shell: directive"
        assert not re.search(r"\bshell\s*\(", code), f"{path}: shell() call"
        assert not re.search(r"\bos\.system|\bsubprocess\b|\bos\.popen", code), f"{path}: starts a process"
    rules = "".join(text for path, text in _workflow_sources() if path.suffix == ".smk")
    assert len(re.findall(r"^    script:", rules, re.M)) > 10  # the rules run Python scripts
    offenders = []
    for path, tree in _python_sources():
        for call, name in _calls(tree):
            shell = {k.arg: k.value for k in call.keywords}.get("shell")
            if name in ("os.system", "os.popen", "os.execl", "os.spawnl", "pty.spawn") or (
                    isinstance(shell, ast.Constant) and shell.value):
                offenders.append(f"{path.relative_to(REPO)}:{call.lineno}: {ast.unparse(call)}")
    assert not offenders, "\n".join(offenders)
