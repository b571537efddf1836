"""Image shards and manifests: the Parquet contracts every stage reads and writes.

An image shard is one Parquet file holding many images, one row each: ``image_id``, ``height``,
``width``, ``dtype`` and the raw C-order pixel buffer in ``pixels``, plus whatever per-image
columns the stage adds. Raw buffers under Parquet's zstd compression are lossless, compress the
mostly-uniform chromosome backgrounds well, and decode with one ``np.frombuffer`` per image
(benchmarks/shard_encoding.py compares this with PNG).

A manifest is the pixel-free view of all shards of a stage output, one row per image, with
``shard`` (path relative to the manifest) and ``row`` (index inside that shard).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from karyosr.io.atomic import atomic_path

PIXEL_COLUMNS = ("height", "width", "dtype", "pixels")
SUPPORTED_DTYPES = ("uint8", "uint16")
# Pixel bytes per Parquet row group at most (one image when it is larger): a reader that goes
# row group by row group (iter_shard) holds about this much, whatever the size of the shard.
ROW_GROUP_BYTES = 64 * 2**20


def shard_of(image_id: str, n_shards: int) -> int:
    """Stable shard index of an image: the same on every machine, Python version and run."""
    digest = hashlib.blake2b(image_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n_shards


def shard_names(n_shards: int) -> list[str]:
    return [f"{i:03d}" for i in range(n_shards)]


def write_table(path: str | os.PathLike, table: pd.DataFrame, row_group_size: int | None = None) -> None:
    """Write a DataFrame to Parquet atomically, with a deterministic byte layout."""
    arrow = pa.Table.from_pandas(table.reset_index(drop=True), preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp, compression="zstd", row_group_size=row_group_size)


def read_table(path: str | os.PathLike, columns: Sequence[str] | None = None) -> pd.DataFrame:
    return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()


def write_shard(path: str | os.PathLike, meta: pd.DataFrame, images: Sequence[np.ndarray]) -> None:
    """Write images with their per-image columns, sorted by ``image_id`` for reproducible bytes."""
    if len(meta) != len(images):
        raise ValueError(f"{path}: {len(meta)} manifest rows but {len(images)} images")
    for image_id, image in zip(meta["image_id"], images):
        if image.ndim != 2 or image.dtype.name not in SUPPORTED_DTYPES:
            raise ValueError(
                f"{path}: image {image_id!r} is {image.dtype.name} with shape {image.shape}; "
                f"shards hold 2-D grayscale {' or '.join(SUPPORTED_DTYPES)} images"
            )
    table = meta.drop(columns=[c for c in PIXEL_COLUMNS if c in meta.columns]).copy()
    table["height"] = np.array([im.shape[0] for im in images], dtype=np.int32)
    table["width"] = np.array([im.shape[1] for im in images], dtype=np.int32)
    table["dtype"] = [im.dtype.name for im in images]
    table["pixels"] = [np.ascontiguousarray(im).tobytes() for im in images]
    order = np.argsort(table["image_id"].to_numpy(dtype=str), kind="stable")
    largest = max((im.nbytes for im in images), default=1)
    write_table(path, table.iloc[order], row_group_size=max(1, ROW_GROUP_BYTES // max(largest, 1)))


def decode_pixels(table: pd.DataFrame) -> list[np.ndarray]:
    return [
        np.frombuffer(buf, dtype=dtype).reshape(h, w)
        for buf, dtype, h, w in zip(table["pixels"], table["dtype"], table["height"], table["width"])
    ]


def read_shard(path: str | os.PathLike) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Per-image columns (without the pixel buffer) and the decoded images, in shard order."""
    table = read_table(path)
    images = decode_pixels(table)
    return table.drop(columns=["pixels"]), images


def iter_shard(path: str | os.PathLike):
    """(row, image) pairs of a shard in shard order, read one Parquet row group at a time, so that
    memory holds one row group (at most ROW_GROUP_BYTES of pixels, or one image), not the shard."""
    parquet = pq.ParquetFile(path)
    for index in range(parquet.num_row_groups):
        table = parquet.read_row_group(index).to_pandas()
        for row, image in zip(table.drop(columns=["pixels"]).to_dict("records"), decode_pixels(table)):
            yield row, image


def read_shard_meta(path: str | os.PathLike) -> pd.DataFrame:
    """The per-image columns of a shard without reading the pixel column from disk."""
    names = [n for n in pq.read_schema(path).names if n != "pixels"]
    return read_table(path, columns=names)


def stack(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack same-size images into one (N, H, W) array for vectorised work."""
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"cannot stack images of different sizes: {sorted(shapes)[:4]}")
    dtypes = {im.dtype.name for im in images}
    if len(dtypes) > 1:  # np.stack would widen the 8-bit ones, whose peak would then read as 65535
        raise ValueError(f"cannot stack images of different bit depths ({', '.join(sorted(dtypes))}); for whole "
                         "images set tiles.bit_depth to 8 or 16 so that every tile has one")
    return np.stack(images) if images else np.zeros((0, 0, 0), dtype=np.uint8)


def build_manifest(shard_paths: Iterable[str | os.PathLike], manifest_path: str | os.PathLike) -> pd.DataFrame:
    """Concatenate the per-image columns of shards into a manifest with ``shard`` and ``row``."""
    base = Path(manifest_path).parent
    parts = []
    for shard_path in shard_paths:
        meta = read_shard_meta(shard_path)
        meta["shard"] = Path(os.path.relpath(shard_path, base)).as_posix()
        meta["row"] = np.arange(len(meta), dtype=np.int64)
        parts.append(meta)
    manifest = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(manifest):
        manifest = manifest.sort_values("image_id", kind="stable").reset_index(drop=True)
    return manifest


def concat_tables(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate small per-shard tables (rejections, metrics) in a stable order."""
    frames = [read_table(p) for p in paths]
    frames = [f for f in frames if len(f.columns)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
