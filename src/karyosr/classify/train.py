"""train_classifier: one classifier's training recipe (passes over the balanced training set,
AdamW, label-smoothed cross-entropy, augmentation) fitted by the engine and written as a model file."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from karyosr import domain, model_file
from karyosr.classify import balance, calibration
from karyosr.classify.augment import augment
from karyosr.classify.input_keys import parse_input
from karyosr.classify.inputs import load_split, scale_of
from karyosr.classify.predict import infer, infer_logits
from karyosr.classify.supernet import build_classifier
from karyosr.engine import (FitSettings, autocast, config_hash, data_hash, fit, pick_device, prepare_module,
                            seed_everything, write_history)
from karyosr.io import shards
from karyosr.io.images import data_range
from karyosr.labels import CLASS_NAMES
from karyosr.sr import archs
from karyosr.sr.inference import to_tensor
from karyosr.weights import count_parameters

log = logging.getLogger(__name__)


class ClassifierTask:
    """One classifier's training recipe: passes over the (balanced) training set in a fresh
    order each epoch, AdamW, label-smoothed cross-entropy, rotations/flips/shifts."""

    def __init__(self, experiment: dict, model: nn.Module, train, val, device: torch.device, weights, seed: int):
        self.cfg, self.device, self.seed = experiment, device, seed
        self.model = prepare_module(model, device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=experiment["lr"],
                                           weight_decay=experiment["weight_decay"])
        self.train_x, self.train_y = train
        self.val_x, self.val_y = val
        self.peak = data_range(self.train_x.dtype)
        self.weights = torch.tensor(weights, dtype=torch.float32, device=device) if weights is not None else None
        self.steps_per_epoch = steps_per_epoch(experiment, len(self.train_y))

    def modules(self):
        return {"model": self.model}

    def optimizers(self):
        return {"model": self.optimizer}

    def _batch_indices(self, step: int) -> np.ndarray:
        """The images of one step: epoch e walks a permutation drawn from (seed, e), so a pass
        sees every training image once and a resumed run draws the same batches."""
        epoch, position = divmod(step, self.steps_per_epoch)
        size = self.cfg["batch_size"]
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        n = len(self.train_y)
        # Permutations are concatenated when an override asks for more steps than one pass holds.
        passes = math.ceil(self.steps_per_epoch * size / n)
        order = torch.cat([torch.randperm(n, generator=generator) for _ in range(passes)])
        return order[position * size : (position + 1) * size].numpy()

    def train_step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        index = self._batch_indices(step)
        x = augment(to_tensor(self.train_x[index], self.peak, self.device), cfg["rotation_step"], cfg["flips"],
                    cfg["translate"], cfg["zoom"])
        y = torch.from_numpy(self.train_y[index]).to(self.device)
        with autocast(self.device, cfg["bf16"]):
            logits = self.model(x)
        loss = F.cross_entropy(logits.float(), y, weight=self.weights, label_smoothing=cfg["label_smoothing"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"cross_entropy": loss.item()}

    def validate(self) -> dict[str, float]:
        probabilities, _ = infer(self.model, self.val_x, self.peak, self.device, self.cfg["bf16"], self.cfg["tta"])
        return {"val_accuracy": float((probabilities.argmax(1) == self.val_y).mean())}

    def export(self) -> dict:
        recalibrate_batchnorm(self.model, self.train_x, self.peak, self.device, self.cfg["bf16"])
        return {"state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}}


def steps_per_epoch(experiment: dict, n_train: int) -> int:
    """An epoch is one pass over the training set unless ``steps_per_epoch`` overrides it."""
    if experiment.get("steps_per_epoch"):
        return int(experiment["steps_per_epoch"])
    return max(1, math.ceil(n_train / experiment["batch_size"]))


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: np.ndarray, peak: float, device, bf16: bool = True,
                          batch_size: int = 128) -> None:
    """Recompute every BatchNorm layer's running statistics with the final weights.

    The running averages trail the weights by ~1/momentum steps, which matters when the weights
    move fast (the high-rate phase of a one-cycle schedule) and most in a super-network, whose
    SR layers keep changing the image the backbone's first BatchNorm sees. One pass over the
    un-augmented training images with a cumulative average (momentum None) gives statistics of
    the model that is exported."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for start in range(0, len(images), batch_size):
        with autocast(device, bf16):
            model(to_tensor(images[start : start + batch_size], peak, device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def fit_classifier(experiment: dict, model: nn.Module, train: tuple[np.ndarray, np.ndarray],
                   val: tuple[np.ndarray, np.ndarray], seed: int, device, checkpoint_dir, weights=None):
    """Fit ``model`` with the experiment's recipe on (images, labels) arrays and return the engine's
    result (its ``export`` holds the weights of the selected pass, BatchNorm recalibrated); the
    model itself is left holding them too."""
    task = ClassifierTask(experiment, model, train, val, device, weights, seed)
    total = experiment["epochs"] * task.steps_per_epoch
    plateau = experiment["lr_schedule"] == "plateau"
    settings = FitSettings(epochs=experiment["epochs"], steps_per_epoch=task.steps_per_epoch,
                           checkpoint_dir=Path(checkpoint_dir),
                           config_slice={"experiment": experiment, "seed": seed, "data": data_hash(*train, *val)},
                           select_by="val_accuracy", patience=experiment["patience"],
                           schedule="constant" if plateau else experiment["lr_schedule"],
                           warmup_steps=round(experiment["warmup_fraction"] * total),
                           lr_decay=experiment["lr_decay"] if plateau else 1.0, lr_patience=experiment["lr_patience"],
                           checkpoint_every=task.steps_per_epoch)
    return fit(task, settings)


def run_train(balanced, eval_shards, split_manifest, experiment: dict, seed: int, out_model, out_history,
              checkpoint_dir, threads: int = 1, crop: dict | None = None, profile: dict | None = None) -> None:
    """Train one classifier and write it as a model file (see karyosr.model_file) whose metadata
    lets :func:`karyosr.classify.predict.load_classifier` rebuild it and
    :func:`karyosr.classify.inputs.prepare_input` crop images as its training data was: ``crop`` is
    the crop_filter slice, ``profile`` the degradation profile of LR inputs."""
    torch.set_num_threads(max(1, threads))
    seed_everything(seed)
    device = pick_device(experiment["device"])
    train_meta, train_images = shards.read_shard(balanced)
    train = (shards.stack(train_images), train_meta["label"].to_numpy(dtype=np.int64))
    val_x, val_y, _ = load_split(eval_shards, split_manifest, "val")
    weights = balance.class_weights(train[1]) if experiment["balance"] == "class_weight" else None
    scale = scale_of(eval_shards)
    model = build_classifier(experiment, scale)
    log.info("%s (seed %d) on %s: %d training images (%d synthetic), %d validation, %d parameters",
             experiment["name"], seed, device, len(train[1]), int(train_meta["synthetic"].sum()), len(val_y),
             count_parameters(model))
    result = fit_classifier(experiment, model, train, (val_x, val_y), seed, device, checkpoint_dir, weights)
    calibrated = calibrate(model, val_x, val_y, device, experiment["bf16"], experiment["tta"])
    log.info("temperature %.3f fitted on %d validation images: negative log-likelihood %.3f -> %.3f",
             calibrated["temperature"], len(val_y), calibrated["val_nll_before"], calibrated["val_nll_after"])
    description = f"{experiment['backbone']} classifier on {experiment['input']} images"
    if parse_input(experiment["input"])["kind"] == "super":
        description += f" (SR layers: {archs.describe(model.sr)})"
    # The domain of the real training images (SMOTE's interpolations are not the data's own).
    real = ~train_meta["synthetic"].to_numpy(bool) if "synthetic" in train_meta else np.ones(len(train[1]), bool)
    real = real if real.any() else np.ones(len(train[1]), bool)
    trained_on = domain.domain_record(train[0][real], data_range(train[0].dtype),
                                      **domain.dataset_facts(train_meta[real]))
    model_file.save(out_model, result.export["state_dict"], {
        "kind": "classifier", "name": experiment["name"], "description": description,
        "backbone": experiment["backbone"], "input": experiment["input"], "scale": scale,
        "input_size": list(train[0].shape[1:]), "class_names": list(CLASS_NAMES), "tta": bool(experiment["tta"]),
        "input_channels": 1, **model_file.bit_depth(data_range(train[0].dtype)), "crop": crop, "profile": profile,
        "seed": seed,
        "experiment": {k: v for k, v in experiment.items() if k != "device"},
        "config_hash": config_hash({"experiment": experiment, "seed": seed}), "domain": trained_on,
        "calibration": calibrated,
        **model_file.training_summary(result)})
    write_history(out_history, result)


def calibrate(model: nn.Module, val_x: np.ndarray, val_y: np.ndarray, device, bf16: bool, tta: bool) -> dict:
    """The temperature fitted on the validation split's logits (see karyosr.classify.calibration)
    and the validation negative log-likelihood before and after, as the model file records them."""
    logits, _ = infer_logits(model, val_x, data_range(val_x.dtype), device, bf16, tta)
    temperature = calibration.fit_temperature(logits, val_y)
    return {"temperature": round(temperature, 4), "val_images": int(len(val_y)),
            "val_nll_before": round(calibration.negative_log_likelihood(logits, val_y), 4),
            "val_nll_after": round(calibration.negative_log_likelihood(logits, val_y, temperature), 4)}
