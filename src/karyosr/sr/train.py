"""train_sr: fit one super-resolution model on one degradation profile.

One task serves every architecture: a pixel loss on the prediction (for SRFBN the per-step
losses weighted by the learned step attention), plus a perceptual loss and an adversarial loss
when their weights are non-zero (SRGAN: MSE + perceptual + 1e-3 vanilla GAN; ESRGAN:
0.01 L1 + perceptual + 0.005 relativistic-average GAN). GAN generators keep an EMA of their
weights, which is what gets exported.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from karyosr import domain, model_file
from karyosr.engine import (EMA, FitSettings, autocast, config_hash, data_hash, fit, pick_device, prepare_module,
                            seed_everything, write_history)
from karyosr.io import shards
from karyosr.io.images import data_range
from karyosr.quality import full_reference
from karyosr.sr import archs
from karyosr.sr.data import Pairs, PatchSampler, load_pairs, to_images, to_tensor
from karyosr.sr.losses import PIXEL_LOSSES, PerceptualLoss, discriminator_loss, generator_adversarial_loss
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


def super_resolve(model: nn.Module, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The model's prediction for an LR batch, whatever its input convention."""
    if getattr(model, "input_upsampled", False):
        lr = F.interpolate(lr, size=(lr.shape[-2] * scale, lr.shape[-1] * scale), mode="bicubic", align_corners=False)
    return archs.final_output(model(lr))


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


class SRTask:
    def __init__(self, cfg: dict, model: nn.Module, train: Pairs, val: Pairs, device: torch.device,
                 perceptual: PerceptualLoss | None):
        self.cfg, self.device, self.scale = cfg, device, train.scale
        self.model = prepare_module(model, device)
        # Compiled for the training steps only; checkpoints keep the plain module's key names.
        self.forward_model = torch.compile(self.model) if cfg["compile"] else self.model
        self.sampler = PatchSampler(train, cfg["patch_size"], cfg["batch_size"])
        self.val, self.peak = val, train.peak
        self.pixel_loss = PIXEL_LOSSES[cfg["pixel_loss"]]
        self.perceptual = perceptual.to(device) if perceptual and cfg["perceptual_weight"] > 0 else None
        self.attention = (archs.StepAttention(model.num_steps).to(device)
                          if cfg["arch"] == "srfbn" and cfg["step_attention"] else None)
        params = list(self.model.parameters()) + (list(self.attention.parameters()) if self.attention else [])
        self.optimizer = torch.optim.Adam(params, lr=cfg["lr"], betas=(0.9, 0.99))
        gan = cfg.get("gan")
        self.gan = gan
        if gan:
            self.discriminator = prepare_module(archs.VGGStyleDiscriminator(**gan["discriminator"]), device)
            self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=gan["lr"], betas=(0.9, 0.99))
            self.ema = EMA(self.model, cfg["ema_decay"])

    def modules(self):
        modules = {"model": self.model}
        if self.attention:
            modules["attention"] = self.attention
        if self.gan:
            modules.update(discriminator=self.discriminator, ema=self.ema.shadow)
        return modules

    def optimizers(self):
        return {"model": self.optimizer, **({"discriminator": self.d_optimizer} if self.gan else {})}

    def _batch(self):
        lr, hr = self.sampler.sample()
        return to_tensor(lr, self.peak, self.device), to_tensor(hr, self.peak, self.device)

    def train_step(self, step: int) -> dict[str, float]:
        lr, hr = self._batch()
        cfg, losses = self.cfg, {}
        with autocast(self.device, cfg["bf16"]):
            if self.attention is not None:
                steps = self.forward_model(lr)
                pixel, weights = archs.srfbn_loss(steps, hr, self.attention, self.pixel_loss)
                output = steps[-1]
                losses["step_weight_last"] = weights[-1].item()
            else:
                output = super_resolve(self.forward_model, lr, self.scale)
                pixel = self.pixel_loss(output, hr)
            total = cfg["pixel_weight"] * pixel
            losses["pixel"] = pixel.item()
            if self.perceptual is not None:
                perceptual = self.perceptual(output, hr)
                total = total + cfg["perceptual_weight"] * perceptual
                losses["perceptual"] = perceptual.item()
            if self.gan:
                self.discriminator.requires_grad_(False)
                fake_logits = self.discriminator(output)
                real_logits = self.discriminator(hr) if self.gan["type"] == "ragan" else None
                adversarial = generator_adversarial_loss(self.gan["type"], fake_logits, real_logits)
                total = total + self.gan["weight"] * adversarial
                losses["adversarial"] = adversarial.item()
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if cfg["grad_clip"]:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg["grad_clip"])
        self.optimizer.step()
        losses["total"] = total.item()

        if self.gan:
            self.discriminator.requires_grad_(True)
            with autocast(self.device, cfg["bf16"]):
                d_loss = discriminator_loss(self.gan["type"], self.discriminator(hr), self.discriminator(output.detach()))
            self.d_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_optimizer.step()
            self.ema.update(self.model)
            losses["discriminator"] = d_loss.item()
        return losses

    def predictor(self) -> nn.Module:
        return self.ema.shadow if self.gan else self.model

    def validate(self) -> dict[str, float]:
        sr = predict(self.predictor(), self.val.lr, self.scale, self.peak, self.device, self.cfg["infer_batch_size"],
                     self.cfg["bf16"])
        return {
            "val_psnr": float(full_reference.psnr(self.val.hr, sr, self.peak).mean()),
            "val_ssim": float(full_reference.ssim(self.val.hr, sr, self.peak).mean()),
        }

    def export(self) -> dict:
        return {"state_dict": {k: v.detach().cpu() for k, v in self.predictor().state_dict().items()}}


@torch.no_grad()
def predict(model: nn.Module, lr_images: np.ndarray, scale: int, peak: float, device: torch.device,
            batch_size: int = 64, bf16: bool = True, rounded: bool = True) -> np.ndarray:
    """Super-resolve (N, h, w) integer images in batches; returns (N, h*scale, w*scale) images of
    the input's dtype, or with ``rounded=False`` float32 grey values clipped to [0, peak] (tiles
    blended before rounding)."""
    model.eval()
    out = []
    for start in range(0, len(lr_images), batch_size):
        lr = to_tensor(lr_images[start : start + batch_size], peak, device)
        with autocast(device, bf16):
            sr = super_resolve(model, lr, scale)
        out.append(to_images(sr, peak, lr_images.dtype) if rounded
                   else sr.detach().float().clamp(0, 1).mul(peak).squeeze(1).cpu().numpy())
    if out:
        return np.concatenate(out)
    return np.zeros((0,) + tuple(s * scale for s in lr_images.shape[1:]), lr_images.dtype if rounded else np.float32)


def run(hr_shards, lr_shards, model_cfg: dict, seed: int, out_model, out_history, checkpoint_dir,
        features_model=None, init_model=None, threads: int = 1, profile: dict | None = None,
        crop: dict | None = None) -> None:
    """Train one SR model and write it as a model file (see karyosr.model_file) whose metadata
    also records the degradation ``profile`` and the crop_filter settings ``crop`` of its data."""
    torch.set_num_threads(max(1, threads))
    seed_everything(seed)
    device = pick_device(model_cfg["device"])
    train = load_pairs(hr_shards, lr_shards, "train")
    val = load_pairs(hr_shards, lr_shards, "val")
    options = resolve_options(model_cfg["options"], train.lr)
    if not (model_cfg.get("init_from") or init_model):
        warn_if_uncentred(model_cfg["name"], options, train.lr)
    model = build_model({**model_cfg, "options": options}, train.scale)
    if init_model:
        apply_state_dict(model, model_file.load(init_model).state_dict, init_model)
        log.info("initialised from %s", init_model)
    perceptual = build_perceptual(model_cfg["perceptual"], features_model) if model_cfg["perceptual_weight"] > 0 else None
    task = SRTask(model_cfg, model, train, val, device, perceptual)
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
