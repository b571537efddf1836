"""Chromosome classification: input preparation, training, prediction and evaluation.

An experiment trains one backbone on one kind of input:

* ``hr``: the cropped HR images (the upper bound);
* ``lr:<profile>``: LR images upsampled back to HR size with bicubic interpolation (the baseline);
* ``sr:<model>:<profile>``: a trained SR model's outputs (two-stage, as SRAS-net);
* ``super:<sr_arch>:<profile>``: SR layers trained jointly with the backbone from the LR images
  (Super-Xception and its Super-ResNet / Super-AlexNet-style variants).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from karyosr import model_file
from karyosr.classify import backbones, balance
from karyosr.dataset.crop_filter import crop_filter_image
from karyosr.engine import (FitSettings, autocast, config_hash, fit, pick_device, prepare_module, seed_everything,
                            write_history)
from karyosr.io import shards
from karyosr.labels import CLASS_NAMES, N_CLASSES
from karyosr.sr import archs
from karyosr.sr.data import to_tensor
from karyosr.sr.infer import load_model
from karyosr.sr.train import predict as predict_sr
from karyosr.sr.upscale import upscale

log = logging.getLogger(__name__)


def parse_input(key: str) -> dict:
    """'sr:srresnet:x4_bicubic' -> {'kind': 'sr', 'model': 'srresnet', 'profile': 'x4_bicubic'}."""
    parts = key.split(":")
    kind = parts[0]
    if kind == "hr" and len(parts) == 1:
        return {"kind": "hr"}
    if kind == "lr" and len(parts) == 2:
        return {"kind": "lr", "profile": parts[1]}
    if kind in ("sr", "super") and len(parts) == 3:
        return {"kind": kind, ("model" if kind == "sr" else "arch"): parts[1], "profile": parts[2]}
    raise ValueError(f"classifier input {key!r}: expected hr, lr:<profile>, sr:<model>:<profile> or "
                     "super:<sr_arch>:<profile>")


def input_slug(key: str) -> str:
    """A path-safe name for an input key."""
    return key.replace(":", "-")


# --------------------------------------------------------------------------- input preparation


def prepare_shard(lr_shard, kind: str, model_path, out_shard, device_name: str = "auto") -> None:
    """LR shard -> the images a classifier of this input kind sees, for every split."""
    meta, images = shards.read_shard(lr_shard)
    if not images:
        shards.write_shard(out_shard, meta, [])
        return
    lr = shards.stack(images)
    if kind == "lr":
        out = [upscale(im, int(s), "bicubic") for im, s in zip(lr, meta["scale"])]
    else:
        model, sr_meta = load_model(model_path)
        device = pick_device(device_name)
        peak = 65535.0 if lr.dtype == np.uint16 else 255.0
        out = list(predict_sr(model.to(device), lr, int(sr_meta["scale"]), peak, device))
    shards.write_shard(out_shard, meta.drop(columns=["height", "width", "dtype"]), out)


def load_split(shard_paths, split_manifest, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, labels, image_ids) of one split from image shards (HR, LR or prepared inputs)."""
    splits = shards.read_table(split_manifest, columns=["image_id", "split"]).set_index("image_id")["split"]
    images, labels, ids = [], [], []
    for path in shard_paths:
        meta, shard_images = shards.read_shard(path)
        for image_id, label, image in zip(meta["image_id"], meta["label"], shard_images):
            if splits.get(image_id) == split and not pd.isna(label):
                images.append(image)
                labels.append(int(label))
                ids.append(image_id)
    if not images:
        raise ValueError(f"no labelled {split!r} images in {list(shard_paths)[:2]}…")
    order = np.argsort(np.array(ids))
    return shards.stack([images[i] for i in order]), np.array(labels)[order], np.array(ids)[order]


def run_balance(shard_paths, split_manifest, method: str, cfg: dict, seed: int, out_shard) -> None:
    images, labels, ids = load_split(shard_paths, split_manifest, "train")
    images, labels, ids, synthetic, parents = balance.balance_split(
        images, labels, ids, method, cfg["sampling_strategy"], cfg["k_neighbors"], seed)
    meta = pd.DataFrame({"image_id": ids, "label": pd.array(labels, dtype="Int8"),
                         "class_name": [CLASS_NAMES[l] for l in labels], "split": "train",
                         "synthetic": synthetic, "parents": [";".join(p) for p in parents]})
    shards.write_shard(out_shard, meta, list(images))
    counts = meta.groupby("class_name", sort=False)["synthetic"].agg(["size", "sum"])
    log.info("balanced training set (%s): %d images, %d synthetic\n%s", method, len(meta), int(synthetic.sum()),
             counts.to_string())


# --------------------------------------------------------------------------- models


class SuperNetwork(nn.Module):
    """SR layers in front of a classifier, trained end to end from LR input (Super-Xception)."""

    def __init__(self, sr: nn.Module, backbone: nn.Module, scale: int):
        super().__init__()
        self.sr, self.backbone, self.scale = sr, backbone, scale

    def upscaled(self, x):
        from karyosr.sr.train import super_resolve

        # Not clamped: a clamp passes no gradient where it saturates, and SR layers pushed out of
        # [0, 1] early on would then stay there, showing the backbone a blank image.
        return super_resolve(self.sr, x, self.scale)

    def features(self, x):
        return self.backbone.features(self.upscaled(x))

    def forward(self, x):
        return self.backbone(self.upscaled(x))


def build_classifier(experiment: dict, scale: int | None) -> nn.Module:
    options = dict(experiment["backbone_options"])
    width = options.pop("width", 1.0)
    backbone = backbones.build_backbone(experiment["backbone"], num_classes=N_CLASSES, width=width, **options)
    spec = parse_input(experiment["input"])
    if spec["kind"] == "super":
        sr = archs.build_sr(spec["arch"], scale, **experiment["sr_options"])
        model = SuperNetwork(sr, backbone, scale)
    else:
        model = backbone
    if experiment.get("init_from"):
        backbones.load_weights(model, experiment["init_from"], strict=False)
    return model


def augment(batch: torch.Tensor, rotation_step: float, flips: bool, translate: float) -> torch.Tensor:
    """Random rotations by multiples of ``rotation_step`` degrees (SRAS-net: 24 x 15°), flips and
    small translations, in one grid_sample call for the whole batch. Uncovered corners take the
    nearest edge pixel, which in a padded crop is background."""
    n = batch.shape[0]
    steps = max(1, round(360 / rotation_step)) if rotation_step else 1
    angle = torch.randint(0, steps, (n,)).float() * (2 * math.pi / steps)
    cos, sin = torch.cos(angle), torch.sin(angle)
    flip = torch.where(torch.rand(n) < 0.5, -1.0, 1.0) if flips else torch.ones(n)
    shift = (torch.rand(n, 2) * 2 - 1) * translate * 2
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1).to(batch.device, batch.dtype)
    grid = F.affine_grid(theta, batch.shape, align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)


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
        self.peak = 65535.0 if self.train_x.dtype == np.uint16 else 255.0
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
                    cfg["translate"])
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


def _views(x: torch.Tensor, tta: bool) -> list[torch.Tensor]:
    """The image, and with test-time augmentation also its mirror image: the flip the training
    augmentation draws. Not the vertical flip: karyotyping crops show the p arm up, and averaging
    in upside-down views cost 4 points of G-band accuracy (ResNet-18, 94.4 -> 90.4 %)."""
    return [x, x.flip(-1)] if tta else [x]


@torch.no_grad()
def infer(model: nn.Module, images: np.ndarray, peak: float, device, bf16: bool = True, tta: bool = False,
          batch_size: int = 128):
    """Class probabilities (averaged with the mirror image's with ``tta``) and penultimate-layer
    features (of the image itself) of images."""
    model.eval()
    head = model.backbone.classifier if isinstance(model, SuperNetwork) else model.classifier
    probabilities, features = [], []
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start : start + batch_size], peak, device)
        views = []
        for i, view in enumerate(_views(x, tta)):
            with autocast(device, bf16):
                feats = model.features(view)
                views.append(torch.softmax(head(feats).float(), 1))
            if i == 0:
                features.append(feats.float().cpu().numpy())
        probabilities.append(torch.stack(views).mean(0).cpu().numpy())
    return np.concatenate(probabilities), np.concatenate(features)


def _scale_of(shard_paths) -> int | None:
    meta = shards.read_shard_meta(shard_paths[0])
    return int(meta["scale"].iloc[0]) if "scale" in meta else None


def run_train(balanced, eval_shards, split_manifest, experiment: dict, seed: int, out_model, out_history,
              checkpoint_dir, threads: int = 1, crop: dict | None = None, profile: dict | None = None) -> None:
    """Train one classifier and write it as a model file (see karyosr.model_file) whose metadata
    lets :func:`load_classifier` rebuild it and :func:`prepare_input` crop images as its training
    data was: ``crop`` is the crop_filter slice, ``profile`` the degradation profile of LR inputs."""
    torch.set_num_threads(max(1, threads))
    seed_everything(seed)
    device = pick_device(experiment["device"])
    train_meta, train_images = shards.read_shard(balanced)
    train = (shards.stack(train_images), train_meta["label"].to_numpy(dtype=np.int64))
    val_x, val_y, _ = load_split(eval_shards, split_manifest, "val")
    weights = balance.class_weights(train[1]) if experiment["balance"] == "class_weight" else None
    scale = _scale_of(eval_shards)
    model = build_classifier(experiment, scale)
    log.info("%s (seed %d) on %s: %d training images (%d synthetic), %d validation, %d parameters",
             experiment["name"], seed, device, len(train[1]), int(train_meta["synthetic"].sum()), len(val_y),
             archs.count_parameters(model))
    task = ClassifierTask(experiment, model, train, (val_x, val_y), device, weights, seed)
    total = experiment["epochs"] * task.steps_per_epoch
    plateau = experiment["lr_schedule"] == "plateau"
    settings = FitSettings(epochs=experiment["epochs"], steps_per_epoch=task.steps_per_epoch,
                           checkpoint_dir=Path(checkpoint_dir), config_slice={"experiment": experiment, "seed": seed},
                           select_by="val_accuracy", patience=experiment["patience"],
                           schedule="constant" if plateau else experiment["lr_schedule"],
                           warmup_steps=round(experiment["warmup_fraction"] * total),
                           lr_decay=experiment["lr_decay"] if plateau else 1.0, lr_patience=experiment["lr_patience"],
                           checkpoint_every=task.steps_per_epoch)
    result = fit(task, settings)
    description = f"{experiment['backbone']} classifier on {experiment['input']} images"
    if parse_input(experiment["input"])["kind"] == "super":
        description += f" (SR layers: {archs.describe(model.sr)})"
    model_file.save(out_model, result.export["state_dict"], {
        "kind": "classifier", "name": experiment["name"], "description": description,
        "backbone": experiment["backbone"], "input": experiment["input"], "scale": scale,
        "input_size": list(train[0].shape[1:]), "class_names": list(CLASS_NAMES), "tta": bool(experiment["tta"]),
        "input_channels": 1, **model_file.bit_depth(task.peak), "crop": crop, "profile": profile, "seed": seed,
        "experiment": {k: v for k, v in experiment.items() if k != "device"},
        "config_hash": config_hash(settings.config_slice), **model_file.training_summary(result)})
    write_history(out_history, result)


def run_predict(eval_shards, split_manifest, model_path, experiment: dict, seed: int, out_predictions,
                out_features, threads: int = 1) -> None:
    torch.set_num_threads(max(1, threads))
    device = pick_device(experiment["device"])
    images, labels, ids = load_split(eval_shards, split_manifest, "test")
    model = build_classifier({**experiment, "init_from": None}, _scale_of(eval_shards))
    archs.apply_state_dict(model, model_file.load(model_path).state_dict, model_path)
    peak = 65535.0 if images.dtype == np.uint16 else 255.0
    probabilities, features = infer(model.to(device), images, peak, device, experiment["bf16"], experiment["tta"])
    # The metaphase cell of each image: cell decoding labels a cell's chromosomes jointly, and
    # intervals resample whole cells.
    cells = shards.read_table(split_manifest, columns=["image_id", "group"]).set_index("image_id")["group"]
    table = pd.DataFrame({"image_id": ids, "cell": cells.loc[ids].to_numpy(), "label": labels,
                          "predicted": probabilities.argmax(1),
                          "probabilities": list(probabilities.astype(np.float32)),
                          "experiment": experiment["name"], "seed": seed})
    shards.write_table(out_predictions, table)
    shards.write_table(out_features, pd.DataFrame({"image_id": ids, "label": labels,
                                                   "features": list(features.astype(np.float32))}))
    log.info("%s seed %d: test accuracy %.3f", experiment["name"], seed, float((table.label == table.predicted).mean()))


# --------------------------------------------------------------------------- models outside the workflow


def load_classifier(path) -> tuple[nn.Module, dict]:
    """A trained classifier (or super-network) rebuilt from its model file's metadata, in eval
    mode, and that metadata. ValueError naming the file for a file without it (a ``model.pt``
    from before model files carried metadata: the workflow's config knew its architecture)."""
    loaded = model_file.load(path)
    meta = model_file.require_kind(loaded, "classifier")
    if "experiment" not in meta:
        raise ValueError(f"{path}: a classifier file without its architecture (written before model files carried "
                         "metadata); rerun rule train_classifier to get a model.safetensors")
    model = build_classifier({**meta["experiment"], "init_from": None}, meta["scale"])
    archs.apply_state_dict(model, loaded.state_dict, path)
    return model.eval(), meta


def input_crop(meta: dict) -> dict:
    """The crop_filter settings for the images a classifier is given outside the workflow.

    ``hr`` and ``sr:`` classifiers take HR-size images (for ``sr:`` ones, images super-resolved
    by that SR model), cropped as the training crops were. ``lr:`` and ``super:`` classifiers take
    LR images: the workflow cropped the HR image and degraded the crop by ``scale``, so an LR
    image is cropped to ``target_size / scale`` with the margin and the foreground minimum scaled
    to LR pixels (the detail minimum stays: LR pixels only carry more detail each)."""
    if not meta.get("crop"):
        raise ValueError(f"model {meta.get('name')!r}: its metadata has no crop settings (trained without them)")
    crop = dict(meta["crop"])
    if parse_input(meta["input"])["kind"] in ("lr", "super"):
        scale = int(meta["scale"])
        crop["target_size"] //= scale
        crop["margin"] = round(crop["margin"] / scale)
        crop["min_foreground_px"] = max(1, math.ceil(crop["min_foreground_px"] / scale**2))
    return crop


def prepare_input(image: np.ndarray, meta: dict) -> np.ndarray:
    """One image as the classifier of ``meta`` saw its training images: cropped with
    :func:`input_crop` (raises ImageRejected with the reason, as crop_filter does) and, for an
    ``lr:`` classifier, upscaled with bicubic interpolation as :func:`prepare_shard` does."""
    crop, _ = crop_filter_image(image, input_crop(meta))
    if parse_input(meta["input"])["kind"] == "lr":
        crop = upscale(crop, int(meta["scale"]), "bicubic")
    return crop
