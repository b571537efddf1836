"""SR training task outside Snakemake: the torch.compile path trains and exports plain weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from karyosr import archs, config, sr_train
from karyosr.sr_data import Pairs


DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config/config.yaml"


def model_settings(run_wide: dict, **model) -> dict:
    """One SR model's slice as the train_sr rule passes it, defaults filled in."""
    base = yaml.safe_load(DEFAULT_CONFIG.read_text())
    cfg = config.validate({**base, "sr": {**run_wide, "models": [model]}, "classify": {"experiments": []}})
    return config.sr_model_settings(cfg, model["name"])


def toy_pairs(n: int, seed: int) -> Pairs:
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, (n, 32, 32), dtype=np.uint8)
    lr = hr.reshape(n, 8, 4, 8, 4).mean((2, 4)).astype(np.uint8)
    return Pairs([f"img{i}" for i in range(n)], hr, lr, np.tile([0, 32, 0, 32], (n, 1)), scale=4)


@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile not available")
def test_compiled_training_steps_export_the_plain_module_weights():
    cfg = model_settings({"compile": True}, name="srcnn", arch="srcnn", options={"channels": [8, 4]}, batch_size=4,
                         patch_size=16, epochs=1, steps_per_epoch=2)
    torch.manual_seed(0)
    model = sr_train.build_model(cfg, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task = sr_train.SRTask(cfg, model, toy_pairs(8, 0), toy_pairs(4, 1), torch.device("cpu"), None)
    assert task.forward_model is not task.model
    for step in range(2):
        assert np.isfinite(task.train_step(step)["total"])
    exported = task.export()["state_dict"]
    assert exported.keys() == before.keys()  # no "_orig_mod." prefix: loadable into a plain model
    assert any(not torch.equal(exported[k], before[k]) for k in before)
    plain = archs.build_sr("srcnn", 4, channels=[8, 4])
    plain.load_state_dict(exported)
    assert "val_psnr" in task.validate()
