"""tiles: whole images (photos, microscope fields, slices) cut into HR tiles with a detail filter.

For the ``images`` layout this stage stands where crop_filter stands for single chromosomes: its
tiles are the HR images every synthetic degradation profile degrades, the SR models train on and
full-reference metrics score. Each image is cut into a centred grid of ``tiles.size`` squares; a
tile whose detail score (mean absolute neighbour difference after a Gaussian, the detail filter of
the medical SR work) is below ``tiles.min_detail`` is flat background and is dropped and counted.
An image smaller than one tile is padded (edge-replicated) or quarantined (``tiles.small_images``).

The object (chromosomes, cells, tissue) of each image is told from its background once per image:
polarity from the border against the mean, Otsu's level on a subsample. Every tile records them,
so metrics score inside the object as they do inside a chromosome, and the box of the object in
the tile, so training patches are placed over it most of the time.

Tiles inherit their image's split, except that a training image of a split with too few groups for
a validation group (``val_tile_fraction`` in the split manifest) gives that share of its tiles (at
least one of two or more), chosen by a hash of the tile id, to validation: never a test group's.

Memory: images are read one Parquet row group at a time and scored tile by tile, so a job holds
one image, its kept tiles and a tile-sized working buffer.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd

from karyosr.dataset.crop_filter import border_median, detail_score, detect_polarity, foreground_mask
from karyosr.dataset.degrade import IDENTITY_COLUMNS
from karyosr.dataset.ingest import REJECTED_COLUMNS
from karyosr.dataset.pairs import tile_grid
from karyosr.io import shards
from karyosr.io.images import grey_levels_per_8bit_level

log = logging.getLogger(__name__)

TILE_COLUMNS = ["source_id", "tile_y", "tile_x", "padded", "detail_score", "polarity", "threshold_level",
                "object_y0", "object_y1", "object_x0", "object_x1"]
IMAGE_COLUMNS = ["image_id", "source", "group", "split", "height", "width", "tiles", "kept", "flat", "padded",
                 "reason"]
# Otsu's level is found on at most this many pixels of an image (a strided subsample).
LEVEL_SAMPLE_PIXELS = 4_000_000


def hash_fraction(key: str) -> float:
    """A number in [0, 1) fixed by ``key``: the same on every machine and run."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big") / 2.0**64


def object_level(image: np.ndarray) -> tuple[str, float]:
    """(polarity, threshold level) separating the image's objects from its background, on a
    strided subsample of a large image."""
    stride = max(1, int(np.ceil(np.sqrt(image.size / LEVEL_SAMPLE_PIXELS))))
    sample = np.ascontiguousarray(image[::stride, ::stride])
    polarity = detect_polarity(sample, border_median(sample))
    _, level = foreground_mask(sample, polarity, "otsu", 0.0)
    return polarity, level


def object_box(tile: np.ndarray, polarity: str, level: float) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the object pixels of a tile (level on the 8-bit scale); the whole tile
    when it has none."""
    scaled = level * grey_levels_per_8bit_level(tile.dtype)
    mask = tile <= scaled if polarity == "dark_on_light" else tile > scaled
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if not len(ys):
        return 0, tile.shape[0], 0, tile.shape[1]
    return int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1


def convert_bit_depth(image: np.ndarray, bit_depth) -> np.ndarray:
    """``image`` at 8 or 16 bits (the full range maps onto the full range: x 257 or / 257, rounded);
    unchanged for ``auto`` or when it already has that depth."""
    if bit_depth == 16 and image.dtype == np.uint8:
        return image.astype(np.uint16) * 257
    if bit_depth == 8 and image.dtype == np.uint16:
        return np.rint(image / 257.0).astype(np.uint8)
    return image


def cut_image(image: np.ndarray, params: dict) -> tuple[list[tuple[int, int]], list[np.ndarray], list[float], bool]:
    """(corners, tiles, detail scores, padded) of every grid tile of one image, before the detail
    filter; an image smaller than a tile is edge-padded to one tile (the caller checks the policy)."""
    size = int(params["size"])
    padded = image.shape[0] < size or image.shape[1] < size
    if padded:
        pad = ((0, max(0, size - image.shape[0])), (0, max(0, size - image.shape[1])))
        image = np.pad(image, pad, mode="edge")
    corners = tile_grid(image.shape, size)
    tiles = [np.ascontiguousarray(image[y:y + size, x:x + size]) for y, x in corners]
    per_level = grey_levels_per_8bit_level(image.dtype)
    scores = [detail_score(t, np.ones(t.shape, bool), float(params["detail_sigma"])) / per_level for t in tiles]
    return corners, tiles, scores, padded


def tile_image(row: dict, image: np.ndarray, params: dict) -> tuple[list[dict], list[np.ndarray], dict]:
    """Tile rows, kept tiles and the per-image record (with ``reason`` when no tile is kept)."""
    size = int(params["size"])
    image = convert_bit_depth(image, params.get("bit_depth", "auto"))
    record = {"image_id": row["image_id"], "source": row.get("source"), "group": row["group"], "split": row["split"],
              "height": image.shape[0], "width": image.shape[1], "tiles": 0, "kept": 0, "flat": 0,
              "padded": False, "reason": ""}
    if min(image.shape) < size and params["small_images"] == "quarantine":
        record["reason"] = (f"image of {image.shape[1]} x {image.shape[0]} px is smaller than one "
                            f"{size} px tile (tiles.small_images: quarantine)")
        return [], [], record
    corners, tiles, scores, padded = cut_image(image, params)
    keep = [i for i, s in enumerate(scores) if s >= float(params["min_detail"])]
    if params["max_per_image"]:
        keep = sorted(sorted(keep, key=lambda i: -scores[i])[: int(params["max_per_image"])])
    record.update(tiles=len(tiles), kept=len(keep), flat=sum(s < float(params["min_detail"]) for s in scores),
                  padded=padded)
    if not keep:
        best = max(scores) if scores else 0.0
        record["reason"] = (f"no tile with detail: the most detailed of {len(tiles)} tiles scores {best:.2f}, "
                            f"below tiles.min_detail {params['min_detail']}")
        return [], [], record
    polarity, level = object_level(image)
    ids = {i: f"{row['image_id']}/t{corners[i][0] // size:03d}_{corners[i][1] // size:03d}" for i in keep}
    validating = set()
    val_fraction = float(row.get("val_tile_fraction") or 0.0)
    if row["split"] == "train" and val_fraction > 0 and len(keep) >= 2:
        # the tiles first in the order of a hash of their ids, at least one of every training image
        count = max(1, round(val_fraction * len(keep)))
        validating = set(sorted(keep, key=lambda i: hash_fraction(ids[i]))[:count])
    rows = []
    for i in keep:
        y, x = corners[i]
        tile_id = ids[i]
        split = "val" if i in validating else row["split"]
        y0, y1, x0, x1 = object_box(tiles[i], polarity, level)
        rows.append({"image_id": tile_id, "dataset": row["dataset"], "group": row["group"], "label": pd.NA,
                     "class_name": None, "split": split, "source_id": row["image_id"], "tile_y": y, "tile_x": x,
                     "padded": padded, "detail_score": scores[i], "polarity": polarity, "threshold_level": level,
                     "object_y0": y0, "object_y1": y1, "object_x0": x0, "object_x1": x1})
    return rows, [tiles[i] for i in keep], record


def tile_images(items, params: dict):
    """Tile an iterable of (ingest row with ``split``, image): (tile rows, tiles, per-image records,
    rejected rows)."""
    rows, tiles, records, rejected = [], [], [], []
    for row, image in items:
        tile_rows, kept, record = tile_image(row, image, params)
        rows += tile_rows
        tiles += kept
        records.append(record)
        if record["reason"]:
            rejected.append({"image_id": row["image_id"], "source": row.get("source"), "stage": "tiles",
                             "reason": record["reason"]})
    meta = pd.DataFrame(rows, columns=IDENTITY_COLUMNS + TILE_COLUMNS)
    meta["label"] = meta["label"].astype("Int8")
    meta["class_name"] = meta["class_name"].astype(object)
    return (meta, tiles, pd.DataFrame(records, columns=IMAGE_COLUMNS),
            pd.DataFrame(rejected, columns=REJECTED_COLUMNS))


def run(in_shard, split_manifest, params: dict, out_shard, out_images, out_rejected) -> None:
    split = shards.read_table(split_manifest)
    columns = ["split"] + (["val_tile_fraction"] if "val_tile_fraction" in split else [])
    by_id = split.set_index("image_id")[columns].to_dict("index")

    def items():
        for row, image in shards.iter_shard(in_shard):
            if row["image_id"] not in by_id:
                raise ValueError(f"{in_shard}: image {row['image_id']!r} is not in {split_manifest}")
            yield {**row, **by_id[row["image_id"]]}, image

    meta, tiles, images, rejected = tile_images(items(), params)
    shards.write_shard(out_shard, meta, tiles)
    shards.write_table(out_images, images)
    shards.write_table(out_rejected, rejected)
    log.info("%d images: %d of %d tiles kept, %d flat ones dropped, %d images padded, %d quarantined",
             len(images), int(images["kept"].sum()), int(images["tiles"].sum()), int(images["flat"].sum()),
             int(images["padded"].sum()), len(rejected))
    for item in rejected.itertuples():
        log.warning("no tiles from %s: %s", item.image_id, item.reason)
