"""train_sr: fit one super-resolution model on one degradation profile.

``run`` loads the training and validation pairs, builds the configured network (``input_shift:
auto`` resolved from the training images, ``build_model``) and the perceptual loss's feature
network (``build_perceptual``), fits the model's training task (:mod:`karyosr.sr.tasks`: the
losses of each kind of model) and writes the model file with the training images' domain.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from karyosr import domain, model_file
from karyosr.engine import FitSettings, config_hash, data_hash, fit, pick_device, seed_everything, write_history
from karyosr.io import shards
from karyosr.io.images import data_range
from karyosr.sr import archs
from karyosr.sr.data import Pairs, load_pairs
from karyosr.sr.losses import PerceptualLoss
from karyosr.sr.tasks import build_task
from karyosr.weights import apply_state_dict, count_parameters

log = logging.getLogger(__name__)


def resolve_options(options: dict, lr_images: np.ndarray | None) -> dict:
    """An SR model's architecture options with ``input_shift: auto`` replaced by the mean grey
    level, in [0, 1], of the LR training images (EDSR's MeanShift from the training set): about 0.9
    for dark chromosomes on white (G-band), under 0.1 for bright ones on black (Q-band). The
    resolved value is what the model checkpoint stores, so inference builds the same network."""
    if options.get("input_shift") != "auto":
        return dict(options)
    if lr_images is None or not len(lr_images):
        raise ValueError("input_shift 'auto' needs the training images to measure their mean grey level")
    return {**options, "input_shift": round(mean_grey(lr_images), 4)}


def mean_grey(images: np.ndarray) -> float:
    """The images' mean grey level as a share of their type's range, in [0, 1]."""
    return float(images.mean()) / data_range(images.dtype)


def warn_if_uncentred(name: str, options: dict, lr_images: np.ndarray) -> None:
    """Warn when a network trained from scratch sees bright images uncentred: on white-background
    crops (G-band, mean grey ~0.9) SRCNN's ReLUs died within 50 steps and it never left its
    bicubic skip (+0.3 dB after 500 steps, +3.3 dB centred in 300)."""
    if options.get("input_shift"):
        return
    mean = mean_grey(lr_images)
    if mean > 0.5:
        log.warning("%s: the training images' mean grey level is %.2f of the range and the input is not centred; "
                    "set options.input_shift: auto in its sr.models entry unless the network was designed for it",
                    name, mean)


def training_domain(hr_shards, train: Pairs) -> dict:
    """The ``domain`` block of an SR model file: the statistics of the LR training images (what
    the model takes as input, so what ``karyosr enhance`` compares its inputs with), the dataset
    names and the LR pixel size (the HR images' ``pixel_size_um`` times the scale) when the HR
    shards record them."""
    hr_meta = pd.concat([shards.read_shard_meta(path) for path in hr_shards], ignore_index=True)
    facts = domain.dataset_facts(hr_meta[hr_meta["image_id"].isin(train.image_ids)])
    size = facts["pixel_size_um"]
    return domain.domain_record(train.lr, train.peak, facts["dataset"], None if size is None else size * train.scale)


def build_model(model_cfg: dict, scale: int, lr_images: np.ndarray | None = None) -> nn.Module:
    """The configured network; ``lr_images`` (the LR training images) resolve ``input_shift: auto``."""
    model = archs.build_sr(model_cfg["arch"], scale, **resolve_options(model_cfg["options"], lr_images))
    if model_cfg.get("init_from"):
        archs.load_weights(model, model_cfg["init_from"], strict=False)
        log.info("initialised %s from %s", model_cfg["name"], model_cfg["init_from"])
    return model


def build_perceptual(perceptual_cfg: dict, features_model: str | None) -> PerceptualLoss:
    if perceptual_cfg["network"] == "vgg19":
        if not perceptual_cfg.get("weights"):
            raise ValueError("perceptual.network vgg19 needs perceptual.weights: a torchvision-format VGG19 state dict")
        return PerceptualLoss(archs.VGG19Features(perceptual_cfg["weights"], layer=perceptual_cfg["layer"]))
    if not features_model:
        raise ValueError("perceptual.network pipeline_features needs the trained feature network")
    loaded = model_file.load(features_model)
    meta = model_file.require_kind(loaded, "features")
    net = archs.SmallFeatureCNN(channels=tuple(meta["channels"]), num_classes=meta["num_classes"])
    apply_state_dict(net, loaded.state_dict, features_model)
    return PerceptualLoss(_Features(net))


class _Features(nn.Module):
    def __init__(self, net: archs.SmallFeatureCNN):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.features(x)


def run(hr_shards, lr_shards, model_cfg: dict, seed: int, out_model, out_history, checkpoint_dir,
        features_model=None, init_from_model=None, threads: int = 1, profile: dict | None = None,
        crop: dict | None = None) -> None:
    """Train one SR model and write it as a model file (see karyosr.model_file) whose metadata
    also records the degradation ``profile`` and the crop_filter settings ``crop`` of its data."""
    torch.set_num_threads(max(1, threads))
    seed_everything(seed)
    device = pick_device(model_cfg["device"])
    train = load_pairs(hr_shards, lr_shards, "train")
    val = load_pairs(hr_shards, lr_shards, "val")
    options = resolve_options(model_cfg["options"], train.lr)
    if not (model_cfg.get("init_from") or init_from_model):
        warn_if_uncentred(model_cfg["name"], options, train.lr)
    model = build_model({**model_cfg, "options": options}, train.scale)
    if init_from_model:
        apply_state_dict(model, model_file.load(init_from_model).state_dict, init_from_model)
        log.info("initialised from %s", init_from_model)
    perceptual = build_perceptual(model_cfg["perceptual"], features_model) if model_cfg["perceptual_weight"] > 0 else None
    task = build_task(model_cfg, model, train, val, device, perceptual)
    description = archs.describe(model)
    log.info("%s: %s on %s: %d training and %d validation images, %d parameters", model_cfg["name"], description,
             device, len(train.hr), len(val.hr), count_parameters(model))
    settings = FitSettings(
        epochs=model_cfg["epochs"], steps_per_epoch=model_cfg["steps_per_epoch"],
        checkpoint_dir=Path(checkpoint_dir),
        config_slice={"model": model_cfg, "seed": seed, "data": data_hash(train.hr, train.lr, val.hr, val.lr)},
        checkpoint_every=model_cfg["checkpoint_every"], select_by=model_cfg["select_by"],
        schedule=model_cfg["lr_schedule"], warmup_steps=model_cfg["warmup_steps"],
    )
    result = fit(task, settings)
    model_file.save(out_model, result.export["state_dict"], {
        "kind": "sr", "name": model_cfg["name"], "arch": model_cfg["arch"], "scale": train.scale, "options": options,
        "description": description, "input_channels": 1, **model_file.bit_depth(train.peak),
        "profile": profile, "crop": crop, "training": model_cfg, "config_hash": config_hash(settings.config_slice),
        "domain": training_domain(hr_shards, train), **model_file.training_summary(result)})
    write_history(out_history, result)
