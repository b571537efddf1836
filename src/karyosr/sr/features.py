"""train_features: the pipeline's own perceptual feature network.

Pretrained VGG19 weights cannot be assumed, so by default the perceptual loss uses a small CNN
that the workflow trains itself, as a chromosome classifier on the HR training images: features
that separate the classes are the band and centromere patterns SR should preserve.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from karyosr import model_file
from karyosr.engine import FitSettings, autocast, config_hash, fit, pick_device, prepare_module, seed_everything
from karyosr.io import shards
from karyosr.io.images import data_range
from karyosr.labels import CLASS_NAMES, N_CLASSES
from karyosr.sr import archs
from karyosr.sr.inference import to_tensor

log = logging.getLogger(__name__)


def load_labelled(hr_shards, split_manifest, split: str) -> tuple[np.ndarray, np.ndarray]:
    wanted = set(shards.read_table(split_manifest, columns=["image_id", "split"]).query("split == @split")["image_id"])
    images, labels = [], []
    for path in hr_shards:
        meta, shard_images = shards.read_shard(path)
        for image_id, label, image in zip(meta["image_id"], meta["label"], shard_images):
            if image_id in wanted and not pd.isna(label):
                images.append(image)
                labels.append(int(label))
    return shards.stack(images), np.array(labels, dtype=np.int64)


class FeatureTask:
    def __init__(self, cfg: dict, train: tuple, val: tuple, device: torch.device):
        self.cfg, self.device = cfg, device
        self.net = prepare_module(archs.SmallFeatureCNN(tuple(cfg["channels"]), num_classes=N_CLASSES), device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg["lr"])
        self.train_x, self.train_y = train
        self.val_x, self.val_y = val
        self.peak = data_range(self.train_x.dtype)

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"net": self.optimizer}

    def train_step(self, step: int) -> dict[str, float]:
        index = torch.randint(0, len(self.train_x), (self.cfg["batch_size"],)).numpy()
        x = to_tensor(self.train_x[index], self.peak, self.device)
        # Random 90° rotations and flips: chromosome orientation carries no class information.
        x = torch.rot90(x, int(torch.randint(0, 4, ())), dims=(2, 3))
        if bool(torch.rand(()) < 0.5):
            x = x.flip(3)
        y = torch.from_numpy(self.train_y[index]).to(self.device)
        with autocast(self.device):
            loss = F.cross_entropy(self.net(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"cross_entropy": loss.item()}

    def validate(self) -> dict[str, float]:
        correct = 0
        for start in range(0, len(self.val_x), 128):
            x = to_tensor(self.val_x[start : start + 128], self.peak, self.device)
            with autocast(self.device):
                predicted = self.net(x).argmax(1).cpu().numpy()
            correct += int((predicted == self.val_y[start : start + 128]).sum())
        return {"val_accuracy": correct / max(len(self.val_x), 1)}

    def export(self) -> dict:
        return {"state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()}}


def run(hr_shards, split_manifest, cfg: dict, seed: int, out_model, checkpoint_dir, threads: int = 1,
        crop: dict | None = None) -> None:
    """Train the feature network and write it as a model file (see karyosr.model_file)."""
    torch.set_num_threads(max(1, threads))
    seed_everything(seed)
    device = pick_device(cfg["device"])
    task = FeatureTask(cfg, load_labelled(hr_shards, split_manifest, "train"),
                       load_labelled(hr_shards, split_manifest, "val"), device)
    settings = FitSettings(epochs=cfg["epochs"], steps_per_epoch=cfg["steps_per_epoch"],
                           checkpoint_dir=Path(checkpoint_dir), config_slice={"features": cfg, "seed": seed},
                           select_by="val_accuracy")
    result = fit(task, settings)
    log.info("feature network: best validation accuracy %.3f at epoch %d",
             result.history["val_accuracy"].max(), result.best_epoch)
    model_file.save(out_model, result.export["state_dict"], {
        "kind": "features", "name": "features", "description": "SmallFeatureCNN, a chromosome classifier on HR crops",
        "channels": list(cfg["channels"]), "num_classes": N_CLASSES, "class_names": list(CLASS_NAMES),
        "input_channels": 1, **model_file.bit_depth(task.peak), "crop": crop, "training": cfg,
        "config_hash": config_hash(settings.config_slice), **model_file.training_summary(result)})
