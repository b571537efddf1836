"""Image shard encodings: raw pixel buffers under Parquet zstd (what karyosr writes) against
per-image PNG in an uncompressed Parquet column. Measures file size, write and read+decode time.

    python benchmarks/shard_encoding.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from common import record
from karyosr import config as config_module
from karyosr.dataset import crop_filter, synthetic
from karyosr.io import shards


def hr_images() -> list[np.ndarray]:
    """Cropped HR images as the pipeline makes them (synthetic, 96 x 96)."""
    params = config_module.validate({})["crop_filter"]
    with tempfile.TemporaryDirectory() as tmp:
        synthetic.generate(Path(tmp) / "raw", {"n_cells": 40}, seed=0)
        files = sorted((Path(tmp) / "raw").rglob("*.bmp"))
        return [crop_filter.crop_filter_image(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), params)[0] for f in files]


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    images = hr_images()
    ids = [f"img{i:05d}" for i in range(len(images))]
    meta = pd.DataFrame({"image_id": ids})
    with tempfile.TemporaryDirectory() as tmp:
        raw_path, png_path = Path(tmp) / "raw.parquet", Path(tmp) / "png.parquet"

        def write_raw():
            shards.write_shard(raw_path, meta, images)

        def write_png():
            blobs = [cv2.imencode(".png", im)[1].tobytes() for im in images]
            pq.write_table(pa.table({"image_id": ids, "png": blobs}), png_path, compression="none")

        def read_raw():
            shards.read_shard(raw_path)

        def read_png():
            table = pq.read_table(png_path).to_pandas()
            [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED) for b in table["png"]]

        result = {"images": len(images), "image_shape": list(images[0].shape)}
        for name, write, read, path in [("raw_zstd", write_raw, read_raw, raw_path),
                                        ("png", write_png, read_png, png_path)]:
            write_s = best_of(3, write)
            read_s = best_of(5, read)
            result[name] = {
                "bytes_per_image": round(path.stat().st_size / len(images), 1),
                "write_ms_per_1000": round(1000 * write_s / len(images) * 1000, 2),
                "read_decode_ms_per_1000": round(1000 * read_s / len(images) * 1000, 2),
            }
        result["raw_bytes_per_image"] = int(images[0].nbytes)
    record("shard_encoding", result)


if __name__ == "__main__":
    main()
