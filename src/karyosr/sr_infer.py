"""infer_sr: a trained SR model over the test split, written with the same contract as the
interpolation baselines (so metrics and report treat both alike)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from karyosr import archs, model_file, shards
from karyosr.engine import pick_device
from karyosr.sr_train import predict
from karyosr.upscale import SR_COLUMNS, select_split

log = logging.getLogger(__name__)


def load_model(path) -> tuple[torch.nn.Module, dict]:
    """A trained SR model (``model.safetensors``, or a ``.pt`` file of an earlier version) rebuilt
    from its metadata, in eval mode, and that metadata (``scale``, ``arch``, ``options``, ...)."""
    loaded = model_file.load(path)
    meta = model_file.require_kind(loaded, "sr")
    model = archs.build_sr(meta["arch"], int(meta["scale"]), **meta["options"])
    archs.apply_state_dict(model, loaded.state_dict, path)
    return model.eval(), meta


def predict_tiled(model, lr_images: np.ndarray, scale: int, peak: float, device, tile: int, overlap: int = 4,
                  batch_size: int = 64, bf16: bool = True) -> np.ndarray:
    """Super-resolve images larger than ``tile`` LR pixels tile by tile, each tile with
    ``overlap`` pixels of context whose output is discarded, so memory stays bounded."""
    n, h, w = lr_images.shape
    if not tile or (h <= tile and w <= tile):
        return predict(model, lr_images, scale, peak, device, batch_size, bf16)
    out = np.zeros((n, h * scale, w * scale), lr_images.dtype)
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            y0, x0 = max(y - overlap, 0), max(x - overlap, 0)
            y1, x1 = min(y + tile + overlap, h), min(x + tile + overlap, w)
            part = predict(model, np.ascontiguousarray(lr_images[:, y0:y1, x0:x1]), scale, peak, device, batch_size, bf16)
            ty, tx = (y - y0) * scale, (x - x0) * scale
            th, tw = (min(y + tile, h) - y) * scale, (min(x + tile, w) - x) * scale
            out[:, y * scale : y * scale + th, x * scale : x * scale + tw] = part[:, ty : ty + th, tx : tx + tw]
    return out


def run(lr_shard, model_path, method: str, infer_cfg: dict, out_shard, threads: int = 1) -> None:
    torch.set_num_threads(max(1, threads))
    device = pick_device(infer_cfg["device"])
    model, meta = load_model(model_path)
    model, scale = model.to(device), int(meta["scale"])
    meta, images = select_split(*shards.read_shard(lr_shard), "test")
    if images:
        lr = shards.stack(images)
        peak = 65535.0 if lr.dtype == np.uint16 else 255.0
        sr = predict_tiled(model, lr, scale, peak, device, infer_cfg["tile"],
                           batch_size=infer_cfg["infer_batch_size"], bf16=infer_cfg["bf16"])
        out = list(sr)
    else:
        out = []
    meta = meta.assign(method=method)[SR_COLUMNS]
    shards.write_shard(out_shard, meta, out)
    log.info("%s: %d test images super-resolved on %s", method, len(out), device)
