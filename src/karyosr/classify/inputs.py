"""classifier_inputs: what a classifier sees, the images prepared for each input kind, and splits read back.

An experiment trains one backbone on one kind of input:

* ``hr``: the cropped HR images (the upper bound);
* ``lr:<profile>``: LR images upsampled back to HR size with bicubic interpolation (the baseline);
* ``sr:<model>:<profile>``: a trained SR model's outputs (two-stage, as SRAS-net);
* ``super:<sr_arch>:<profile>``: SR layers trained jointly with the backbone from the LR images
  (Super-Xception and its Super-ResNet / Super-AlexNet-style variants).

Outside the workflow, :func:`prepare_input` gives one image the crop (and, for ``lr:``, the
upscaling) that the training images had.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from karyosr.classify.input_keys import parse_input
from karyosr.dataset.crop_filter import crop_filter_image
from karyosr.io import shards
from karyosr.io.images import data_range
from karyosr.sr.upscale import upscale


def prepare_shard(lr_shard, kind: str, model_path, out_shard, device_name: str = "auto", threads: int = 1) -> None:
    """LR shard -> the images a classifier of this input kind sees, for every split (``threads``:
    CPU threads of the SR model's inference)."""
    meta, images = shards.read_shard(lr_shard)
    if not images:
        shards.write_shard(out_shard, meta, [])
        return
    lr = shards.stack(images)
    if kind == "lr":
        out = [upscale(im, int(s), "bicubic") for im, s in zip(lr, meta["scale"])]
    else:
        # torch only where a model runs: balancing and LR inputs read this module too.
        import torch

        from karyosr.engine import pick_device
        from karyosr.sr.infer import load_model
        from karyosr.sr.inference import predict as predict_sr

        torch.set_num_threads(max(1, threads))
        model, sr_meta = load_model(model_path)
        device = pick_device(device_name)
        peak = data_range(lr.dtype)
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


def scale_of(shard_paths) -> int | None:
    """The scale of LR images in these shards (None for HR-size images, which have no scale column)."""
    meta = shards.read_shard_meta(shard_paths[0])
    return int(meta["scale"].iloc[0]) if "scale" in meta else None


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
