"""Real LR/HR pairs from a magnification series: register every (low, high) pair of a slide, cut
the registered pairs into equal tiles that form a ``paired`` degradation profile.

The register stage reads one ingest shard (a magnification series is sharded by slide, so every
capture of a slide is in it) and registers, for each slide, every pair of captures at two
different magnifications, the higher one as the view (:func:`karyosr.dataset.registration.register`).
Its table keeps every pair: accepted ones and rejected ones with the reason; nothing is cut from
a rejected pair.

A ``paired`` profile (``degrade.profiles`` entry with ``paired: true``) takes the accepted pairs
whose nominal ratio is its ``scale``: each is cut by :func:`karyosr.dataset.registration.cut_pair` and
tiled into ``tile`` x ``tile`` LR tiles with their ``scale`` x larger HR tiles, so that the LR
shard follows the degrade contract (identity columns, ``split``, ``profile``, ``scale``) and the
HR shard stands where crop_filter's shard stands for synthetic profiles: train_sr, infer_sr,
upscale and metrics consume them unchanged. The split follows the slide (the ingest group).
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np
import pandas as pd

from karyosr.dataset.degrade import IDENTITY_COLUMNS
from karyosr.dataset.registration import Registration, Transform, cut_pair, register
from karyosr.io import shards

log = logging.getLogger(__name__)

REGISTER_KEYS = ("method", "min_score", "min_overlap", "scale_tolerance", "max_rotation_deg")
PAIR_COLUMNS = ["slide", "low_id", "high_id", "low_source", "high_source", "low_magnification",
                "high_magnification", "cx", "cy", "scale", "rotation_deg", "score", "overlap", "method",
                "nominal_ratio", "accepted", "reason", "seconds", "low_h", "low_w", "view_h", "view_w"]
# Per-tile columns beside the degrade contract's identity columns.
TILE_COLUMNS = ["slide", "pair_id", "low_id", "high_id", "tile_y", "tile_x", "registration_score"]
# How far a pair's nominal ratio may lie from a paired profile's scale (relative).
RATIO_MATCH = 0.01


def slide_pairs(meta: pd.DataFrame) -> list[tuple[int, int]]:
    """(low, high) row positions of every two captures of one slide at different magnifications,
    ordered by (low magnification, high magnification, image_ids)."""
    rows = meta.reset_index(drop=True)
    pairs = [(i, j) for i in range(len(rows)) for j in range(len(rows))
             if rows["magnification"][i] < rows["magnification"][j]]
    return sorted(pairs, key=lambda p: (rows["magnification"][p[0]], rows["magnification"][p[1]],
                                        rows["image_id"][p[0]], rows["image_id"][p[1]]))


def register_pair(low: np.ndarray, high: np.ndarray, nominal_ratio: float, params: dict) -> dict:
    """One registration as a pairs-table row (without the identity columns); a pair the
    registration cannot even attempt is a rejected row with the error as its reason."""
    settings = {k: params[k] for k in REGISTER_KEYS if k in params}
    try:
        row = register(low, high, nominal_ratio, **settings).as_row()
    except (ValueError, cv2.error) as exc:
        row = {"cx": math.nan, "cy": math.nan, "scale": math.nan, "rotation_deg": math.nan, "score": math.nan,
               "overlap": 0.0, "method": settings.get("method", "ncc"), "nominal_ratio": nominal_ratio,
               "accepted": False, "reason": f"registration failed: {exc}", "seconds": 0.0}
    return {**row, "low_h": low.shape[0], "low_w": low.shape[1], "view_h": high.shape[0], "view_w": high.shape[1]}


def register_slides(meta: pd.DataFrame, images: list[np.ndarray], params: dict) -> pd.DataFrame:
    """The pairs table of every slide in ``meta`` (ingest rows with slide and magnification)."""
    rows = []
    meta = meta.reset_index(drop=True)
    for slide, part in meta.groupby("slide", sort=True):
        part = part.reset_index()  # "index": the position in meta / images
        for i, j in slide_pairs(part):
            lo, hi = part.iloc[i], part.iloc[j]
            ratio = float(hi["magnification"]) / float(lo["magnification"])
            row = register_pair(images[lo["index"]], images[hi["index"]], ratio, params)
            rows.append({"slide": slide, "low_id": lo["image_id"], "high_id": hi["image_id"],
                         "low_source": lo["source"], "high_source": hi["source"],
                         "low_magnification": lo["magnification_label"],
                         "high_magnification": hi["magnification_label"], **row})
            if row["accepted"]:
                log.info("%s: %s in %s: score %.3f, ratio %.4f, rotation %.2f deg (%.2f s)", slide,
                         hi["magnification_label"], lo["magnification_label"], row["score"], row["scale"],
                         row["rotation_deg"], row["seconds"])
            else:
                log.warning("%s: %s in %s rejected: %s", slide, hi["magnification_label"],
                            lo["magnification_label"], row["reason"])
    table = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    return table.astype({"accepted": bool, "reason": str})


def tile_grid(lr_shape: tuple[int, int], tile: int) -> list[tuple[int, int]]:
    """Top-left LR corners of the whole ``tile`` x ``tile`` tiles of an LR region, centred in it."""
    ny, nx = lr_shape[0] // tile, lr_shape[1] // tile
    oy, ox = (lr_shape[0] - ny * tile) // 2, (lr_shape[1] - nx * tile) // 2
    return [(oy + iy * tile, ox + ix * tile) for iy in range(ny) for ix in range(nx)]


def matches_profile(nominal_ratio: float, scale: int) -> bool:
    return abs(float(nominal_ratio) - scale) <= RATIO_MATCH * scale


def pair_id(low_id: str, high_id: str) -> str:
    """``<high image_id>@<low magnification>/<low stem>``: unique per pair of a slide."""
    return f"{high_id}@{'/'.join(low_id.split('/')[-2:])}"


def registration_of(row) -> Registration:
    """A pairs-table row (a named tuple) as the :class:`Registration` it records."""
    return Registration(Transform(row.cx, row.cy, row.scale, row.rotation_deg), row.score, row.overlap, row.method,
                        row.nominal_ratio, (int(row.view_h), int(row.view_w)), row.reason or None)


def cut_tiles(meta: pd.DataFrame, images: list[np.ndarray], pairs: pd.DataFrame, splits: dict[str, str],
              profile_name: str, profile: dict):
    """(LR rows, LR tiles, HR rows, HR tiles) of every accepted pair whose nominal ratio is the
    profile's scale. ``splits`` maps a slide (the ingest group) to its split."""
    scale, tile = int(profile["scale"]), int(profile["tile"])
    position = {image_id: i for i, image_id in enumerate(meta["image_id"])}
    groups = dict(zip(meta["image_id"], meta["group"]))
    datasets = dict(zip(meta["image_id"], meta["dataset"]))
    lr_rows, lr_tiles, hr_rows, hr_tiles = [], [], [], []
    wanted = np.array([matches_profile(r, scale) for r in pairs["nominal_ratio"]], bool)
    use = pairs[pairs["accepted"].astype(bool).to_numpy() & wanted]
    for pair in use.itertuples(index=False):
        missing = [i for i in (pair.low_id, pair.high_id) if i not in position]
        if missing:
            raise ValueError(f"paired profile {profile_name}: the pairs table names image(s) {missing} that are "
                             "not in the ingest shard it was registered from")
        low, high = images[position[pair.low_id]], images[position[pair.high_id]]
        lr, hr = cut_pair(low, high, registration_of(pair), scale=scale, margin=float(profile["margin"]))
        corners = tile_grid(lr.shape, tile)
        if not corners:
            log.warning("%s: the registered region %s of %s is smaller than one %d px tile; no tiles from it",
                        profile_name, lr.shape, pair.high_id, tile)
        group = groups[pair.high_id]
        if group not in splits:
            raise ValueError(f"paired profile {profile_name}: slide {group!r} has no split in the split manifest")
        pid = pair_id(pair.low_id, pair.high_id)
        for y, x in corners:
            iy, ix = y // tile, x // tile
            identity = {"image_id": f"{pid}/t{iy:03d}_{ix:03d}", "dataset": datasets[pair.high_id], "group": group,
                        "label": pd.NA, "class_name": None, "split": splits[group]}
            extra = {"slide": pair.slide, "pair_id": pid, "low_id": pair.low_id, "high_id": pair.high_id,
                     "tile_y": y, "tile_x": x, "registration_score": pair.score}
            hr_rows.append({**identity, **extra})
            hr_tiles.append(np.ascontiguousarray(hr[y * scale:(y + tile) * scale, x * scale:(x + tile) * scale]))
            lr_rows.append({**identity, "profile": profile_name, "scale": scale, "kernel": "registered", **extra})
            lr_tiles.append(np.ascontiguousarray(lr[y:y + tile, x:x + tile]))
    hr_meta = pd.DataFrame(hr_rows, columns=IDENTITY_COLUMNS + TILE_COLUMNS)
    lr_meta = pd.DataFrame(lr_rows, columns=IDENTITY_COLUMNS + ["profile", "scale", "kernel"] + TILE_COLUMNS)
    for table in (hr_meta, lr_meta):
        table["label"] = table["label"].astype("Int8")
        table["class_name"] = table["class_name"].astype(object)
    return lr_meta, lr_tiles, hr_meta, hr_tiles


def run_register(in_shard, params: dict, out_table) -> None:
    meta, images = shards.read_shard(in_shard)
    table = register_slides(meta, images, params) if len(meta) else pd.DataFrame(columns=PAIR_COLUMNS)
    shards.write_table(out_table, table)
    log.info("%s: %d pairs of %d slides registered, %d rejected", in_shard, len(table),
             meta["slide"].nunique() if len(meta) else 0, int((~table["accepted"].astype(bool)).sum()))


def split_pairs_table(tables: list[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(all pairs, the rejected ones) from the per-shard pairs tables, sorted for stable bytes."""
    frames = [t for t in tables if len(t)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PAIR_COLUMNS)
    table = table.sort_values(["slide", "low_id", "high_id"], kind="stable").reset_index(drop=True)
    return table, table[~table["accepted"].astype(bool)].reset_index(drop=True)


def run_pairs_manifest(tables, out_pairs, out_rejected) -> None:
    pairs, rejected = split_pairs_table([shards.read_table(p) for p in tables])
    shards.write_table(out_pairs, pairs)
    shards.write_table(out_rejected, rejected)
    log.info("%d pairs registered, %d rejected", len(pairs), len(rejected))
    for item in rejected.itertuples():
        log.warning("rejected %s in %s: %s", item.high_id, item.low_id, item.reason)


def run_paired(in_shard, pairs_table, split_manifest, profile_name: str, profile: dict, out_lr, out_hr) -> None:
    meta, images = shards.read_shard(in_shard)
    pairs = shards.read_table(pairs_table)
    split = shards.read_table(split_manifest, columns=["group", "split"]).drop_duplicates()
    splits = dict(zip(split["group"], split["split"]))
    lr_meta, lr, hr_meta, hr = cut_tiles(meta, images, pairs, splits, profile_name, profile)
    shards.write_shard(out_hr, hr_meta, hr)
    shards.write_shard(out_lr, lr_meta, lr)
    log.info("paired profile %s (x%d): %d tiles from %d registered pairs", profile_name, int(profile["scale"]),
             len(lr), lr_meta["pair_id"].nunique())


__all__ = ["REGISTER_KEYS", "PAIR_COLUMNS", "slide_pairs", "register_pair", "register_slides", "tile_grid",
           "matches_profile", "cut_tiles", "run_register", "split_pairs_table", "run_pairs_manifest", "run_paired",
           "pair_id", "registration_of"]
