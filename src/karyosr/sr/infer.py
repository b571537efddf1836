"""infer_sr: a trained SR model over the test split, written with the same contract as the
interpolation baselines (so metrics and report treat both alike)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from karyosr import model_file
from karyosr.engine import autocast, pick_device
from karyosr.io import shards
from karyosr.io.images import data_range
from karyosr.sr import archs
from karyosr.sr.inference import super_resolve, to_tensor
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


# LR pixels per forward pass up to which small windows (tiles at image edges, small whole images)
# are batched: a 256 px window's worth, where the per-call overhead is long amortised (MSRResNet on
# one CPU core: 64 windows of 32 px run at the GFLOPS of one of 256 px) and memory stays a tile's.
BATCH_PIXELS = 256 * 256
# Memory a forward pass holds, in multiples of the largest layer output: measured 2.1-2.3 for the
# demo MSRResNet at x4 in channels-last (a layer's input and output alive together, a skip, the
# allocator's slack); 3 keeps auto_tile's bound an upper bound.
ACTIVATION_FACTOR = 3
DEFAULT_MEMORY_BYTES = 1 << 30
TILE_STEP = 32


def activation_bytes_per_pixel(model, scale: int) -> float:
    """Bytes one forward pass of ``model`` holds per LR input pixel: ACTIVATION_FACTOR times its
    largest layer output, measured on a small probe input on the model's device."""
    output_bytes = []

    def record(_module, _input, output) -> None:
        output_bytes.append(output.numel() * output.element_size())

    hooks = [module.register_forward_hook(record) for module in model.modules() if not any(module.children())]
    probe = 32
    try:
        with torch.inference_mode():
            super_resolve(model, torch.zeros(1, 1, probe, probe, device=next(model.parameters()).device), scale)
    finally:
        for hook in hooks:
            hook.remove()
    return ACTIVATION_FACTOR * max(output_bytes) / probe**2


def auto_tile(shape: tuple[int, ...], scale: int, model, memory_bytes: int = DEFAULT_MEMORY_BYTES,
              overlap: int = 16) -> int:
    """The tile side (LR pixels) for :func:`predict_tiled` on images of ``shape`` (``(..., h, w)``):
    0 (whole images) when one image's forward pass fits in ``memory_bytes``, else the largest
    multiple of TILE_STEP whose window (the tile with ``overlap`` pixels of context on each side)
    fits, at least TILE_STEP. The larger the tile the less the overlapping context costs: with 16
    px of context a 3264 x 1840 photo takes 15 % more arithmetic than whole in 384 px tiles, 25 % in
    256 px tiles, 55 % in 128 px tiles."""
    per_pixel = activation_bytes_per_pixel(model, scale)
    h, w = shape[-2:]
    if h * w * per_pixel <= memory_bytes:
        return 0
    window = int((memory_bytes / per_pixel) ** 0.5)
    return max(TILE_STEP, (window - 2 * overlap) // TILE_STEP * TILE_STEP)


def tile_for(setting: int | str, shape: tuple[int, ...], scale: int, model, overlap: int = 16) -> int:
    """The tile side a ``tile`` setting asks for on images of ``shape``: its number (0: whole
    images), or for "auto" :func:`auto_tile`'s."""
    return auto_tile(shape, scale, model, overlap=overlap) if setting == "auto" else int(setting)


def _blend_weights(windows: list[tuple[int, int]], length: int, scale: int, overlap: int) -> list[np.ndarray]:
    """Per window along one axis, its ramp (:func:`_ramp`, in output pixels) divided by the sum of
    every window's ramp there: a pixel's weights sum to one. The tiles form a grid, so a tile's 2-D
    weight is the product of its row's and its column's, and blending needs no image-sized buffer."""
    ramps = [_ramp(start * scale, end * scale, length * scale, overlap * scale) for start, end in windows]
    total = np.zeros(length * scale)
    for (start, end), ramp in zip(windows, ramps):
        total[start * scale : end * scale] += ramp
    return [(ramp / total[start * scale : end * scale]).astype(np.float32)
            for (start, end), ramp in zip(windows, ramps)]


def _window_batches(lr_images: np.ndarray, rows, cols, batch_size: int):
    """(keys, windows) in raster order over images, tile rows and tile columns: runs of consecutive
    windows of one shape, at most ``batch_size`` and BATCH_PIXELS pixels (or one window) each;
    keys are (image, row, column) indices."""
    keys, windows = [], []
    for index, image in enumerate(lr_images):
        for i, (y0, y1) in enumerate(rows):
            for j, (x0, x1) in enumerate(cols):
                window = image[y0:y1, x0:x1]
                limit = min(batch_size, max(1, BATCH_PIXELS // window.size))
                if windows and (window.shape != windows[0].shape or len(windows) >= limit):
                    yield keys, np.stack(windows)
                    keys, windows = [], []
                keys.append((index, i, j))
                windows.append(window)
    if windows:
        yield keys, np.stack(windows)


def _forward(model, windows: np.ndarray, scale: int, peak: float, device, bf16: bool) -> np.ndarray:
    """The model's float32 output grey values for (n, h, w) windows, clipped to [0, peak]: blended
    before rounding, as the whole-image output is rounded once."""
    lr = to_tensor(windows, peak, device).contiguous(memory_format=torch.channels_last)
    with autocast(device, bf16):
        sr = super_resolve(model, lr, scale)
    return sr.float().clamp_(0, 1).mul_(peak).squeeze(1).cpu().numpy()


def _write_rounded(target: np.ndarray, values: np.ndarray, peak: float) -> None:
    """``values`` rounded and clipped as the whole-image path rounds, into ``target`` (any integer
    array, e.g. rows of a memory-mapped file)."""
    np.round(values, out=values)
    np.clip(values, 0, peak, out=values)
    target[...] = values


def predict_tiled(model, lr_images: np.ndarray, scale: int, peak: float, device, tile: int, overlap: int = 16,
                  batch_size: int = 64, bf16: bool = True, out: np.ndarray | None = None) -> np.ndarray:
    """Super-resolve (N, h, w) integer images, larger ones than ``tile`` LR pixels tile by tile,
    so memory stays bounded, and join the tiles without seams: each tile is read with ``overlap``
    LR pixels of context on every side, and where two tiles overlap their outputs are blended
    (before rounding) with linear ramps that ignore the outer half of each tile's context
    (:func:`_ramp`). The result equals the whole-image output where half the context covers the
    network's receptive field, and stays within a grey level of it where it covers most of it
    (tests/test_sr_tiling.py). ``tile`` 0 runs whole images (:func:`auto_tile` picks a tile).

    Tiles run in channels-last batches (the model is switched to that layout: faster convolutions
    on CPU and GPU) and are blended one tile row at a time in float32: memory is the tile row in
    flight and the rows it shares with the next, whatever the image's height. The rounded output
    is written row by row into ``out`` when given (an (N, h*scale, w*scale) array of the input's
    dtype, e.g. a ``np.memmap``, so a large output streams to disk) and returned."""
    n, h, w = lr_images.shape
    if out is None:
        out = np.empty((n, h * scale, w * scale), lr_images.dtype)
    elif out.shape != (n, h * scale, w * scale):
        raise ValueError(f"out has shape {out.shape}, the output needs {(n, h * scale, w * scale)}")
    if not tile or (h <= tile and w <= tile):
        tile, overlap = max(h, w), 0
    rows, cols = _windows(h, tile, overlap), _windows(w, tile, overlap)
    row_weights, col_weights = _blend_weights(rows, h, scale, overlap), _blend_weights(cols, w, scale, overlap)
    model = model.eval().to(memory_format=torch.channels_last)
    # one tile row of output, reused by every row; the rows a row shares with the next are copied out
    rows_in_flight = np.empty((max(y1 - y0 for y0, y1 in rows) * scale, w * scale), np.float32)
    with torch.inference_mode():
        for keys, windows in _window_batches(lr_images, rows, cols, batch_size):
            for (index, i, j), part in zip(keys, _forward(model, windows, scale, peak, device, bf16)):
                (y0, y1), (x0, x1) = rows[i], cols[j]
                if j == 0:
                    strip = rows_in_flight[: (y1 - y0) * scale]
                    strip.fill(0)
                part *= col_weights[j]
                strip[:, x0 * scale : x1 * scale] += part
                if j < len(cols) - 1:
                    continue
                # the tile row is complete: add the rows it shares with the previous one, write
                # every row the next one does not reach, keep the rest for it
                strip *= row_weights[i][:, None]
                if i > 0:
                    strip[: len(shared)] += shared
                done = (rows[i + 1][0] - y0) * scale if i + 1 < len(rows) else len(strip)
                _write_rounded(out[index, y0 * scale : y0 * scale + done], strip[:done], peak)
                shared = strip[done:].copy()
    return out


def run(lr_shard, model_path, method: str, infer_cfg: dict, out_shard, threads: int = 1) -> None:
    torch.set_num_threads(max(1, threads))
    device = pick_device(infer_cfg["device"])
    model, meta = load_model(model_path)
    model, scale = model.to(device), int(meta["scale"])
    meta, images = select_split(*shards.read_shard(lr_shard), "test")
    if images:
        lr = shards.stack(images)
        peak = data_range(lr.dtype)
        overlap = infer_cfg["tile_overlap"]
        sr = predict_tiled(model, lr, scale, peak, device, tile_for(infer_cfg["tile"], lr.shape, scale, model, overlap),
                           overlap, batch_size=infer_cfg["infer_batch_size"], bf16=infer_cfg["bf16"])
        out = list(sr)
    else:
        out = []
    meta = meta.assign(method=method)[SR_COLUMNS]
    shards.write_shard(out_shard, meta, out)
    log.info("%s: %d test images super-resolved on %s", method, len(out), device)
