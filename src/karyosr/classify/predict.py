"""Classifier prediction: calibrated class probabilities and features of the test images (with
test-time augmentation), and trained classifiers rebuilt from their model files outside the
workflow."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from torch import nn

from karyosr import model_file
from karyosr.classify import calibration
from karyosr.classify.inputs import load_split, scale_of
from karyosr.classify.supernet import SuperNetwork, build_classifier
from karyosr.engine import autocast, pick_device
from karyosr.io import shards
from karyosr.io.images import data_range
from karyosr.sr.inference import to_tensor
from karyosr.weights import apply_state_dict

log = logging.getLogger(__name__)


def _views(x: torch.Tensor, tta: bool) -> list[torch.Tensor]:
    """The image, and with test-time augmentation also its mirror image: the flip the training
    augmentation draws. Not the vertical flip: karyotyping crops show the p arm up, and averaging
    in upside-down views cost 4 points of G-band accuracy (ResNet-18, 94.4 -> 90.4 %)."""
    return [x, x.flip(-1)] if tta else [x]


@torch.no_grad()
def infer_logits(model: nn.Module, images: np.ndarray, peak: float, device, bf16: bool = True, tta: bool = False,
                 batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Logits of every view (the image, and with ``tta`` its mirror image), (n, views, classes),
    and penultimate-layer features (of the image itself) of images."""
    model.eval()
    head = model.backbone.classifier if isinstance(model, SuperNetwork) else model.classifier
    logits, features = [], []
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start : start + batch_size], peak, device)
        views = []
        for i, view in enumerate(_views(x, tta)):
            with autocast(device, bf16):
                feats = model.features(view)
                views.append(head(feats).float())
            if i == 0:
                features.append(feats.float().cpu().numpy())
        logits.append(torch.stack(views, dim=1).cpu().numpy())
    return np.concatenate(logits), np.concatenate(features)


def infer(model: nn.Module, images: np.ndarray, peak: float, device, bf16: bool = True, tta: bool = False,
          batch_size: int = 128, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities at ``temperature`` (averaged over the views, see `infer_logits`) and
    features of images."""
    logits, features = infer_logits(model, images, peak, device, bf16, tta, batch_size)
    return calibration.probabilities(logits, temperature).astype(np.float32), features


def run_predict(eval_shards, split_manifest, model_path, experiment: dict, seed: int, out_predictions,
                out_features, threads: int = 1) -> None:
    torch.set_num_threads(max(1, threads))
    device = pick_device(experiment["device"])
    images, labels, ids = load_split(eval_shards, split_manifest, "test")
    model = build_classifier({**experiment, "init_from": None}, scale_of(eval_shards))
    loaded = model_file.load(model_path)
    apply_state_dict(model, loaded.state_dict, model_path)
    peak = data_range(images.dtype)
    probabilities, features = infer(model.to(device), images, peak, device, experiment["bf16"], experiment["tta"],
                                    temperature=temperature_of(loaded.metadata))
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


def temperature_of(metadata: dict) -> float:
    """The calibration temperature a classifier file records (1: none, a file from before
    classifiers were calibrated)."""
    return float(metadata.get("calibration", {}).get("temperature", 1.0))


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
    apply_state_dict(model, loaded.state_dict, path)
    return model.eval(), meta
