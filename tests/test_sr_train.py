"""SR training task outside Snakemake: the torch.compile path trains and exports plain weights."""

from __future__ import annotations

import shutil

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from karyosr import config
from karyosr.engine import FitSettings, fit
from karyosr.quality import full_reference
from karyosr.resize import imresize
from karyosr.sr import archs, train as sr_train
from karyosr.sr.data import Pairs
from karyosr.sr.tasks import GANTask, SRFBNGANTask, SRFBNTask, SRTask, build_task
from karyosr.sr.upscale import upscale


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
@pytest.mark.skipif(not any(shutil.which(c) for c in ("cc", "gcc", "clang")),
                    reason="torch.compile's CPU backend needs a C compiler (cc, gcc or clang); none on PATH")
def test_compiled_training_steps_export_the_plain_module_weights():
    cfg = model_settings({"compile": True}, name="srcnn", arch="srcnn", options={"channels": [8, 4]}, batch_size=4,
                         patch_size=16, epochs=1, steps_per_epoch=2)
    torch.manual_seed(0)
    train = toy_pairs(8, 0)
    model = sr_train.build_model(cfg, 4, train.lr)  # the recipe's input_shift 'auto' reads the images
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task = build_task(cfg, model, train, toy_pairs(4, 1), torch.device("cpu"), None)
    assert task.forward_model is not task.model
    for step in range(2):
        assert np.isfinite(task.train_step(step)["total"])
    exported = task.export()["state_dict"]
    assert exported.keys() == before.keys()  # no "_orig_mod." prefix: loadable into a plain model
    assert any(not torch.equal(exported[k], before[k]) for k in before)
    plain = archs.build_sr("srcnn", 4, channels=[8, 4], input_shift=model.input_shift)
    plain.load_state_dict(exported)
    assert "val_psnr" in task.validate()


def banded_rods(n: int, seed: int, size: int = 32) -> Pairs:
    """White background, one dark rotated rod with sinusoidal bands per image, slightly blurred;
    LR by MATLAB-bicubic x4 downscaling, as the workflow's 'bicubic' degrade kernel makes it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    hr = np.empty((n, size, size), np.uint8)
    for i in range(n):
        angle = rng.uniform(0, np.pi)
        cy, cx = rng.uniform(0.4 * size, 0.6 * size, 2)
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        inside = np.clip(np.minimum(rng.uniform(8, 13) - np.abs(u), rng.uniform(2.5, 4) - np.abs(v)), 0, 1)
        bands = 0.5 + 0.5 * np.sin(u * rng.uniform(0.8, 1.6) + rng.uniform(0, 6))
        image = cv2.GaussianBlur(245 - inside * (60 + 120 * bands), (0, 0), 1.0)
        hr[i] = np.clip(image, 0, 255).round()
    return Pairs([f"rod{i}" for i in range(n)], hr, imresize(hr, scale=0.25), np.tile([0, size, 0, size], (n, 1)), 4)



@pytest.mark.parametrize("model, kind, modules, optimizers", [
    ({"arch": "srcnn"}, SRTask, ["model"], ["model"]),
    ({"arch": "srfbn", "step_attention": False}, SRTask, ["model"], ["model"]),
    ({"arch": "srfbn"}, SRFBNTask, ["model", "attention"], ["model"]),
    ({"arch": "srcnn", "gan": {"type": "vanilla", "weight": 1e-3}}, GANTask, ["model", "discriminator", "ema"],
     ["model", "discriminator"]),
    ({"arch": "srfbn", "gan": {"type": "ragan", "weight": 5e-3}}, SRFBNGANTask,
     ["model", "attention", "discriminator", "ema"], ["model", "discriminator"]),
])
def test_each_kind_of_model_gets_its_task_with_the_checkpoint_names_of_earlier_runs(model, kind, modules, optimizers):
    """The checkpoint's module and optimiser names are what a resumed run loads by."""
    cfg = model_settings({"device": "cpu"}, name="m", **model)
    train = toy_pairs(4, 0)
    task = build_task(cfg, sr_train.build_model(cfg, 4, train.lr), train, toy_pairs(2, 1), torch.device("cpu"), None)
    assert type(task) is kind
    assert list(task.modules()) == modules and list(task.optimizers()) == optimizers
    assert task.export()["state_dict"].keys() == task.model.state_dict().keys()

# Small versions of the recipe's models (input centred, bicubic-skip variants where the
# published network has none).
TOY_MODELS = {
    "srcnn": {"channels": [16, 8], "kernels": [5, 3, 3], "input_shift": 0.5},
    "srresnet": {"num_block": 1, "num_feat": 32, "bicubic_residual": True, "batch_norm": False, "input_shift": 0.5},
    "rrdbnet": {"num_feat": 16, "num_block": 1, "num_grow_ch": 8, "bicubic_residual": True, "input_shift": 0.5},
    "srfbn": {"num_feat": 12, "num_group": 2, "num_step": 2, "input_shift": 0.5},
    "unet_sharpen": {"num_feat": 8, "depth": 2, "input_shift": 0.5},
}


@pytest.mark.parametrize("arch", sorted(TOY_MODELS))
def test_every_architecture_beats_bicubic_on_a_toy_problem(arch, tmp_path):
    """100 steps of the workflow's training path (build_task + fit, warm-up and cosine schedule)."""
    torch.set_num_threads(1)
    cfg = model_settings({"device": "cpu"}, name=arch, arch=arch, options=TOY_MODELS[arch], batch_size=8,
                         patch_size=32, lr=2e-3, warmup_steps=10, epochs=1, steps_per_epoch=100)
    train, val = banded_rods(64, 0), banded_rods(16, 1)
    bicubic = float(full_reference.psnr(val.hr, upscale(val.lr, 4, "bicubic"), 255.0).mean())
    torch.manual_seed(0)
    task = build_task(cfg, sr_train.build_model(cfg, 4), train, val, torch.device("cpu"), None)
    start = task.validate()["val_psnr"]
    settings = FitSettings(epochs=1, steps_per_epoch=100, checkpoint_dir=tmp_path, config_slice=cfg,
                           checkpoint_every=1000, schedule="cosine", warmup_steps=10, progress=False)
    end = fit(task, settings).history["val_psnr"].iloc[-1]
    assert end > start + 0.1, (start, end)
    assert end > bicubic + 0.4, (bicubic, end)


def test_srcnn_residual_moves_off_zero_with_a_centred_input_and_warm_up(tmp_path):
    """The published-size SRCNN layers on white-background crops at lr 1e-3: with the input
    centred and a short warm-up, the second layer keeps live units and the residual grows within
    40 steps. (Without the warm-up Adam's first, sign-like steps on the 1,600-input second layer
    killed every one of its units on this toy; uncentred, the same happened on the G-band crops,
    and the residual then stays at zero for good.)"""
    torch.set_num_threads(1)
    cfg = model_settings({"device": "cpu"}, name="srcnn", arch="srcnn", options={"input_shift": 0.5}, batch_size=8,
                         patch_size=32, lr=1e-3)
    torch.manual_seed(0)
    model = sr_train.build_model(cfg, 4)
    task = build_task(cfg, model, banded_rods(32, 0), banded_rods(4, 1), torch.device("cpu"), None)
    fit(task, FitSettings(epochs=1, steps_per_epoch=40, checkpoint_dir=tmp_path, config_slice=cfg,
                          checkpoint_every=1000, select_by="last", schedule="cosine", warmup_steps=20, progress=False))
    lr = torch.from_numpy(banded_rods(8, 2).lr).float().div(255).unsqueeze(1)
    with torch.no_grad():
        up = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
        hidden = model.body[:4](up - 0.5)
        residual = model(lr) - up
    assert (hidden.amax((0, 2, 3)) > 0).float().mean() > 0.5  # most second-layer units alive
    assert residual.abs().mean() * 255 > 1.0  # grey levels


def test_input_shift_auto_is_the_training_images_mean_grey():
    rods = banded_rods(8, 0)  # dark rods on white
    options = sr_train.resolve_options({"num_feat": 8, "input_shift": "auto"}, rods.lr)
    assert options["input_shift"] == pytest.approx(rods.lr.mean() / 255, abs=1e-4) and options["input_shift"] > 0.8
    assert sr_train.resolve_options({"input_shift": 0.5}, None) == {"input_shift": 0.5}
    model = sr_train.build_model({"name": "m", "arch": "rrdbnet", "options": {"num_feat": 8, "num_block": 1,
                                                                              "num_grow_ch": 4, "input_shift": "auto"}},
                                 4, rods.lr)
    assert model.input_shift == options["input_shift"]
    with pytest.raises(ValueError, match="auto"):
        archs.build_sr("srcnn", 4, input_shift="auto")  # only train_sr knows the training images


def test_uncentred_input_on_bright_images_is_warned_about(caplog):
    rods = banded_rods(8, 0)  # dark rods on white: mean grey above 0.8
    with caplog.at_level("WARNING", logger="karyosr.sr.train"):
        sr_train.warn_if_uncentred("srcnn_vdsr", {}, rods.lr)
    assert "srcnn_vdsr" in caplog.text and "options.input_shift: auto" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="karyosr.sr.train"):
        sr_train.warn_if_uncentred("srcnn_vdsr", sr_train.resolve_options({"input_shift": "auto"}, rods.lr), rods.lr)
        sr_train.warn_if_uncentred("srcnn_vdsr", {}, 255 - rods.lr)  # bright rods on black
    assert caplog.text == ""


def test_checkpoint_is_not_resumed_on_other_training_data(tmp_path, caplog):
    """A rerun after the data changed upstream (a degradation profile edited: train_sr reruns with
    the same model config) trains afresh instead of resuming the finished checkpoint."""
    import logging

    import pandas as pd

    from karyosr.io import shards

    cfg = model_settings({"device": "cpu"}, name="srcnn", arch="srcnn", options={"channels": [8, 4]}, batch_size=4,
                         patch_size=16, epochs=1, steps_per_epoch=3)

    def write(pairs: Pairs, noise: int) -> tuple[Path, Path]:
        ids = pairs.image_ids
        meta = pd.DataFrame({"image_id": ids, "dataset": "toy", "group": ids,
                             "label": pd.array([pd.NA] * len(ids), "Int8"), "class_name": None,
                             "split": ["train", "val"] * (len(ids) // 2)})
        lr = [np.clip(im.astype(int) + noise, 0, 255).astype(np.uint8) for im in pairs.lr]
        shards.write_shard(tmp_path / f"hr{noise}.parquet", meta, list(pairs.hr))
        shards.write_shard(tmp_path / f"lr{noise}.parquet", meta.assign(profile="toy", scale=4), lr)
        return tmp_path / f"hr{noise}.parquet", tmp_path / f"lr{noise}.parquet"

    pairs = toy_pairs(8, 0)
    for noise, resumed in ((0, False), (0, True), (9, False)):
        hr, lr = write(pairs, noise)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="karyosr.engine"):
            sr_train.run([hr], [lr], cfg, 0, tmp_path / "model.safetensors", tmp_path / "history.parquet",
                         tmp_path / "checkpoints")
        assert ("resuming from" in caplog.text) == resumed, (noise, caplog.text)
