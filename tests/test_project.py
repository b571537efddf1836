"""Project hygiene: lint, pinned environments, the README's commands and CI in step."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _pins(requirements, where):
    """{name: version} of requirements that must all be pinned exactly (name==version)."""
    pins = {}
    for line in requirements:
        match = re.match(r"^([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)$", line)
        assert match, f"{where}: {line!r} is not pinned exactly (name==version)"
        pins[match[1].lower().replace("_", "-")] = match[2]
    return pins


def test_conda_envs_pin_the_same_versions_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # optional extras count too: the conda envs carry e.g. pydicom so that DICOM reads under --sdm conda
    declared = _pins(project["dependencies"] + project["optional-dependencies"]["dicom"], "pyproject.toml")
    env_files = sorted((REPO / "workflow/envs").glob("*.yaml"))
    assert env_files
    for env_file in env_files:
        env = yaml.safe_load(env_file.read_text())
        pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
        assert pip_lists, f"{env_file.name}: no pip section"
        for name, version in _pins(pip_lists[0], env_file.name).items():
            assert name in declared, f"{env_file.name}: {name} is not a dependency in pyproject.toml"
            assert version == declared[name], f"{env_file.name}: {name} {version} != pyproject {declared[name]}"
        assert any(str(d).startswith("python=3.11") for d in env["dependencies"]), env_file.name


def test_readme_installs_the_torch_pyproject_pins():
    # pip install -e . would otherwise replace the torch the README's first step installed
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch,) = [d for d in dependencies if re.match(r"torch\b", d)]
    assert f"${{TORCH_SPEC:-{torch}}}" in (REPO / "README.md").read_text()


def test_every_rule_env_exists():
    for rules in (REPO / "workflow/rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', rules.read_text()):
            assert (rules.parent / env).resolve().is_file(), f"{rules.name}: missing {env}"


def test_readme_starts_with_the_two_setup_commands_and_ci_runs_the_second():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", readme, re.S)
    assert block and readme.index(block.group(0)) < 1500, "the set-up commands must come first"
    commands = [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2
    run_cmd, test_cmd = commands
    assert run_cmd.rstrip().endswith("snakemake --cores all")
    assert "torch==2.13.0" in run_cmd and "torch==2.13.0" in test_cmd
    assert test_cmd.strip() in (REPO / ".ci/run").read_text()


def test_snakemake_lint_is_clean():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr, result.stdout + result.stderr


def test_workflow_files_are_snakefmt_formatted():
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "workflow"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, f"run `snakefmt workflow` to format:\n{result.stdout}{result.stderr}"
