"""infer_sr: a trained SR model over the test split, written with the same contract as the
interpolation baselines (so metrics and report treat both alike)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from karyosr import model_file
from karyosr.engine import pick_device
from karyosr.io import shards
from karyosr.io.images import data_range
from karyosr.sr import archs
from karyosr.sr.train import predict
from karyosr.sr.upscale import SR_COLUMNS, select_split
from karyosr.weights import apply_state_dict

log = logging.getLogger(__name__)


def load_model(path) -> tuple[torch.nn.Module, dict]:
    """A trained SR model (``model.safetensors``, or a ``.pt`` file of an earlier version) rebuilt
    from its metadata, in eval mode, and that metadata (``scale``, ``arch``, ``options``, ...)."""
    loaded = model_file.load(path)
    meta = model_file.require_kind(loaded, "sr")
    model = archs.build_sr(meta["arch"], int(meta["scale"]), **meta["options"])
    apply_state_dict(model, loaded.state_dict, path)
    return model.eval(), meta


def _windows(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Windows along one axis: cores of ``tile`` pixels, each widened by ``overlap`` pixels of
    context on both sides (clipped to the image), so neighbouring windows share 2 x overlap."""
    return [(max(core - overlap, 0), min(core + tile + overlap, length)) for core in range(0, length, tile)]


def _ramp(start: int, end: int, length: int, overlap: int) -> np.ndarray:
    """Blending weight along one axis of a window [start, end) of an axis of ``length`` pixels
    whose sides that border another window carry ``overlap`` pixels of context: 0 over the outer
    half of the context (where the missing image beyond the window distorts the output most),
    rising linearly to 1 across the next ``overlap`` pixels. The ramps of two neighbouring windows
    cross at the border of their cores and sum to 1."""
    position = np.arange(start, end, dtype=np.float64) + 0.5
    weight = np.ones(end - start)
    if overlap:
        if start > 0:
            weight = np.minimum(weight, (position - start - overlap / 2) / overlap)
        if end < length:
            weight = np.minimum(weight, (end - position - overlap / 2) / overlap)
    # a floor, not 0: every pixel keeps a defined weighted mean even where only one window reaches
    return np.clip(weight, 1e-6, 1.0)


def predict_tiled(model, lr_images: np.ndarray, scale: int, peak: float, device, tile: int, overlap: int = 16,
                  batch_size: int = 64, bf16: bool = True) -> np.ndarray:
    """Super-resolve images larger than ``tile`` LR pixels tile by tile, so memory stays bounded,
    and join the tiles without seams: each tile is read with ``overlap`` LR pixels of context on
    every side, and where two tiles overlap their outputs are blended (before rounding) with
    linear ramps that ignore the outer half of each tile's context (:func:`_ramp`). The result
    equals the whole-image output where half the context covers the network's receptive field,
    and stays within a grey level of it where it covers most of it (tests/test_sr_tiling.py)."""
    n, h, w = lr_images.shape
    if not tile or (h <= tile and w <= tile):
        return predict(model, lr_images, scale, peak, device, batch_size, bf16)
    # float64 sums: where tiles agree (context covering the receptive field) the blend returns
    # their value exactly, so rounding matches the whole-image output bit for bit (16-bit too)
    total = np.zeros((n, h * scale, w * scale), np.float64)
    weights = np.zeros((h * scale, w * scale), np.float64)
    for y0, y1 in _windows(h, tile, overlap):
        rows = _ramp(y0 * scale, y1 * scale, h * scale, overlap * scale)
        for x0, x1 in _windows(w, tile, overlap):
            weight = np.outer(rows, _ramp(x0 * scale, x1 * scale, w * scale, overlap * scale))
            part = predict(model, np.ascontiguousarray(lr_images[:, y0:y1, x0:x1]), scale, peak, device, batch_size,
                           bf16, rounded=False)
            total[:, y0 * scale : y1 * scale, x0 * scale : x1 * scale] += part * weight
            weights[y0 * scale : y1 * scale, x0 * scale : x1 * scale] += weight
    # back to float32 before rounding, as the whole-image path rounds: a value the tiles agree on
    # that is exactly k + 0.5 in float32 (16-bit images) rounds the same way
    return np.clip(np.round((total / weights).astype(np.float32)), 0, peak).astype(lr_images.dtype)


def run(lr_shard, model_path, method: str, infer_cfg: dict, out_shard, threads: int = 1) -> None:
    torch.set_num_threads(max(1, threads))
    device = pick_device(infer_cfg["device"])
    model, meta = load_model(model_path)
    model, scale = model.to(device), int(meta["scale"])
    meta, images = select_split(*shards.read_shard(lr_shard), "test")
    if images:
        lr = shards.stack(images)
        peak = data_range(lr.dtype)
        sr = predict_tiled(model, lr, scale, peak, device, infer_cfg["tile"], infer_cfg["tile_overlap"],
                           batch_size=infer_cfg["infer_batch_size"], bf16=infer_cfg["bf16"])
        out = list(sr)
    else:
        out = []
    meta = meta.assign(method=method)[SR_COLUMNS]
    shards.write_shard(out_shard, meta, out)
    log.info("%s: %d test images super-resolved on %s", method, len(out), device)
