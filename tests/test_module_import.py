"""karyosr imported into another workflow with Snakemake's `module` directive, as a user would.

The wrapper lives in a temporary folder of its own (so `workflow.basedir` is not this checkout),
overrides one config key in its Snakefile, prefixes the imported rules and runs the tiny config
end to end; the report must carry the overridden title. The same run sets keep_intermediate:
false, so it also checks that intermediate shards are deleted and the results are not.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from workflow_helpers import REPO, TINY_CONFIG, write_config

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
    config = copy.deepcopy(TINY_CONFIG)
    # the shortest end-to-end run: one profile, one learned model, one classifier seed
    config["degrade"]["profiles"] = config["degrade"]["profiles"][:1]
    config["sr"]["models"][0].update(epochs=1, steps_per_epoch=4)
    config["classify"]["seeds"] = [0]
    config["classify"]["experiments"] = [dict(config["classify"]["experiments"][0], epochs=1, steps_per_epoch=4)]
    config["keep_intermediate"] = False
    write_config(tmp_path, config)
    (tmp_path / "Snakefile").write_text(WRAPPER.format(snakefile=REPO / "workflow/Snakefile"))

    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
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
