"""The real G-band chromosomes shipped beside the checkout, when they are there."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from karyosr import config as config_module
from karyosr.dataset import ingest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gband_config():
    config = yaml.safe_load((REPO / "config/gband.yaml").read_text())
    config_module.validate(config)
    root = (REPO / config["dataset"]["source"]["path"]).resolve()
    if not root.is_dir():
        pytest.skip(f"G-band data not found at {root}")
    return config, root


def test_gband_folder_ingests_with_labels_and_cells(gband_config):
    config, root = gband_config
    candidates = ingest.list_candidates(root, "gband", config["dataset"]["layout"])
    assert len(candidates) == 2806
    assert candidates["error"].isna().all()
    assert sorted(candidates["label"].unique()) == list(range(24))
    assert candidates["group"].str.fullmatch(r"\d+").all()
    # One shard of 16, decoded for real: every file reads as 8-bit grayscale.
    meta, images, rejected = ingest.ingest_shard(root, candidates, shard=0, n_shards=16, max_pixels=10**7)
    assert rejected.empty and len(meta) > 100
    assert all(im.dtype.name == "uint8" and im.ndim == 2 for im in images)
    first = meta.iloc[0]
    assert first["image_id"] == f"gband/{first['group']}/{Path(first['source']).stem}"
