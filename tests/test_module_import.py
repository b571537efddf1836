"""karyosr imported into another workflow with Snakemake's `module` directive, as a user would.

The wrapper lives in a temporary folder of its own (so `workflow.basedir` is not this checkout),
overrides one config key in its Snakefile, prefixes the imported rules and runs the catalog's
test config (.test/config/config.yaml) end to end; the report must carry the overridden title.
The same run sets keep_intermediate: false, so it also checks that intermediate shards are
deleted and the results are not.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from workflow_helpers import REPO, write_config

pytestmark = pytest.mark.slow

WRAPPER = """\
configfile: "config.yaml"


config["report"]["title"] = "imported by another workflow"


module karyosr:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from karyosr as karyosr_*


rule all:
    input:
        rules.karyosr_all.input,
    default_target: True
"""


def test_workflow_runs_as_a_module_of_another_workflow(tmp_path):
    # the shortest end-to-end run: one profile, one learned model, one classifier seed
    config = yaml.safe_load((REPO / ".test/config/config.yaml").read_text())
    config["keep_intermediate"] = False
    write_config(tmp_path, config)
    (tmp_path / "Snakefile").write_text(WRAPPER.format(snakefile=REPO / "workflow/Snakefile"))

    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert (f"karyosr config read from: {tmp_path / 'config.yaml'}; not read: config/config.yaml "
            "(karyosr is a module: the importing workflow gives the config)\n") in result.stderr
    index = (tmp_path / "results/report/index.html").read_text()
    assert "imported by another workflow" in index
    assert (tmp_path / "results/metrics/summary.csv").is_file()
    assert list((tmp_path / "results/models").rglob("model.safetensors"))
    # keep_intermediate: false let Snakemake delete the intermediate shards once consumed
    assert list((tmp_path / "results/crop_filter/shards").glob("*.parquet"))
    for stage in ("ingest", "degrade", "sr"):
        assert not list((tmp_path / "results" / stage).rglob("shards/*.parquet")), stage
    # nothing was written into the checkout the module came from
    assert not (REPO / "workflow/results").exists()
