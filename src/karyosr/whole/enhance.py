"""Rule ``enhance_whole``: which held-out whole images (or low-magnification test captures) a
profile enhances, and their enhancement whole (or on the central crop within ``max_pixels``) by a
baseline or an SR model in seamless tiles, written as a shard with the crop and time of each."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from karyosr.dataset.pairs import matches_profile
from karyosr.io import shards
from karyosr.io.images import data_range
from karyosr.sr.upscale import upscale

log = logging.getLogger(__name__)

ENHANCED_COLUMNS = ["image_id", "dataset", "group", "slide", "magnification", "split", "method", "profile", "scale",
                    "crop_y0", "crop_y1", "crop_x0", "crop_x1", "seconds"]


def captures_to_enhance(meta: pd.DataFrame, pairs: pd.DataFrame | None, splits: dict[str, str],
                        scale: int) -> list[int]:
    """Row positions in ``meta`` of the test-split images to enhance: every one for a folder of whole
    images (``pairs`` None), else the captures that are the low side of an accepted pair whose
    nominal ratio is ``scale`` (the images a model of that paired profile was trained to enlarge).
    Groups without a split entry are not test groups."""
    lows = None
    if pairs is not None:
        accepted = pairs[pairs["accepted"].astype(bool)]
        lows = {row.low_id for row in accepted.itertuples(index=False) if matches_profile(row.nominal_ratio, scale)}
    return [i for i, (image_id, group) in enumerate(zip(meta["image_id"], meta["group"]))
            if (lows is None or image_id in lows) and splits.get(group) == "test"]


def central_crop_box(shape: tuple[int, int], scale: int, max_pixels: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the largest central crop, in the image's proportions, whose output at
    ``scale`` has at most ``max_pixels`` pixels; the whole image when it fits."""
    h, w = shape
    if h * w * scale * scale <= max_pixels:
        return 0, h, 0, w
    factor = (max_pixels / (h * w * scale * scale)) ** 0.5
    ch, cw = max(1, int(h * factor)), max(1, int(w * factor))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return y0, y0 + ch, x0, x0 + cw


def enhance(image: np.ndarray, scale: int, method: str, model=None, device=None, infer_cfg: dict | None = None,
            unsharp: dict | None = None) -> np.ndarray:
    """``image`` enlarged ``scale`` times by an interpolation baseline (``model`` None) or by a
    trained SR model on ``device`` in seamless tiles of ``infer_cfg['tile']`` LR pixels (whole when 0,
    sized to a memory bound when "auto": :func:`karyosr.sr.infer.auto_tile`)."""
    if model is None:
        return upscale(image, scale, method, unsharp)
    from karyosr.sr.infer import predict_tiled, tile_for  # torch only where a model runs

    cfg = infer_cfg or {}
    overlap = int(cfg.get("tile_overlap", 16))
    return predict_tiled(model, image[None], scale, data_range(image.dtype), device,
                         tile_for(cfg.get("tile", 0), image.shape, scale, model, overlap), overlap,
                         batch_size=int(cfg.get("infer_batch_size", 64)), bf16=bool(cfg.get("bf16", True)))[0]


def run(in_shard, pairs_table, split_manifest, method: str, profile_name: str, profile: dict, infer_cfg: dict,
        unsharp: dict, model_path, out_shard, threads: int = 1, max_pixels: int = 16_000_000) -> None:
    """Enhance this shard's test images of ``profile_name`` (the captures of its accepted pairs, or
    with ``pairs_table`` None every held-out whole image) with ``method`` (a baseline, or the SR
    model in ``model_path``), each whole or on its central crop within ``max_pixels`` output pixels,
    and write them as a shard beside the crop and run time of each. Images are read one Parquet
    row group at a time."""
    meta = shards.read_shard_meta(in_shard)
    pairs = shards.read_table(pairs_table) if pairs_table else None
    split = shards.read_table(split_manifest, columns=["group", "split"]).drop_duplicates()
    scale = int(profile["scale"])
    chosen = set(captures_to_enhance(meta, pairs, dict(zip(split["group"], split["split"])), scale)
                 if len(meta) else [])
    model, device = None, None
    if model_path:
        import torch

        from karyosr.engine import pick_device
        from karyosr.sr.infer import load_model

        torch.set_num_threads(max(1, threads))
        device = pick_device(infer_cfg["device"])
        model, model_meta = load_model(model_path)
        model = model.to(device)
        if int(model_meta["scale"]) != scale:
            raise ValueError(f"{model_path}: a x{model_meta['scale']} model cannot enhance profile "
                             f"{profile_name!r} (x{scale})")
    rows, out = [], []
    for i, (row, image) in enumerate(shards.iter_shard(in_shard)):
        if i not in chosen:
            continue
        start = time.perf_counter()
        y0, y1, x0, x1 = central_crop_box(image.shape, scale, max_pixels)
        out.append(enhance(np.ascontiguousarray(image[y0:y1, x0:x1]), scale, method, model, device, infer_cfg,
                           unsharp))
        rows.append({**{k: row.get(k) for k in ("image_id", "dataset", "group", "slide", "magnification")},
                     "split": "test", "method": method, "profile": profile_name, "scale": scale,
                     "crop_y0": y0, "crop_y1": y1, "crop_x0": x0, "crop_x1": x1,
                     "seconds": time.perf_counter() - start})
        log.info("%s: %s %dx%d%s -> %dx%d in %.1f s", method, row["image_id"], *image.shape,
                 "" if (y1 - y0, x1 - x0) == image.shape else f" (central crop {y1 - y0}x{x1 - x0})",
                 *out[-1].shape, rows[-1]["seconds"])
    shards.write_shard(out_shard, pd.DataFrame(rows, columns=ENHANCED_COLUMNS), out)
