"""The Snakemake workflow catalog's conventions: .test/config/config.yaml runs dry with
`--directory .test` (the catalog's CI check; tests/test_module_import.py runs it for real), and
every run logs which config files it read."""

from __future__ import annotations

import re
import shutil

import pytest

from workflow_helpers import REPO, snakemake, write_config

pytestmark = pytest.mark.slow


@pytest.fixture
def test_dir(tmp_path):
    """A copy of .test, so that the run's .snakemake/ does not land in the checkout."""
    copy = tmp_path / "test"
    shutil.copytree(REPO / ".test", copy)
    return copy


def output_of(result) -> str:
    return result.stdout + result.stderr


def test_test_config_runs_dry_from_its_folder(test_dir):
    output = output_of(snakemake(test_dir, "-n"))
    assert f"karyosr config read from: {test_dir / 'config/config.yaml'}\n" in output
    # every stage is planned (the dry run's job table): the learned SR model, the classifier, the report
    for rule in ("ingest", "crop_filter", "degrade", "train_sr", "infer_sr", "train_classifier", "metrics", "report"):
        assert re.search(rf"^{rule} +\d+$", output, re.M), rule


def test_log_names_every_config_file_in_merge_order(test_dir, tmp_path):
    extra = write_config(tmp_path, {"report": {"title": "overridden"}}, "extra.yaml")
    output = output_of(snakemake(test_dir, "-n", "--configfile", str(extra), "--config", "seed=3"))
    assert (f"karyosr config read from: {test_dir / 'config/config.yaml'}, then {extra} (--configfile), "
            "then --config values\n") in output


def test_log_says_the_default_config_was_not_read(tmp_path):
    """--configfile with --directory elsewhere: Snakemake skips config/config.yaml silently."""
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    config = tmp_path / "mine.yaml"
    shutil.copy2(REPO / ".test/config/config.yaml", config)
    output = output_of(snakemake(workdir, "-n", "--configfile", str(config)))
    assert (f"karyosr config read from: {config} (--configfile); "
            f"not read: config/config.yaml (not in the working directory {workdir})\n") in output
