"""Image export: the test split's LR, SR and HR images as files that Fiji/ImageJ opens.

The workflow keeps images in Parquet shards (karyosr.io.shards); ``export.images: true`` writes one
folder per profile and method, ``results/export/<profile>/<method>/``, with one file per test
image: PNG for 8-bit images, TIFF for 16-bit ones (PNG would do too, but TIFF is what 16-bit
microscopy tools expect), both lossless. The file name is the ``image_id`` with its ``/``
separators written as ``__`` (``tiny/c0001/c0001 1a`` -> ``tiny__c0001__c0001 1a.png``), so one
folder holds a whole method and opens as an image sequence; ``images.csv`` beside the files maps
every file back to its ``image_id``, class, size and pixel size.

TIFFs carry the pixel size where it is known (the ingested file's ``pixel_size_um``, see
:func:`pixel_sizes`) as an ImageJ calibration in microns (karyosr.io.tiff), so Fiji measures in
micrometres; PNG files carry none (OpenCV writes no pHYs chunk).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Callable, Iterable, Mapping

import cv2
import numpy as np
import pandas as pd

from karyosr import domain
from karyosr.io import atomic, shards, tiff

log = logging.getLogger(__name__)

# The pseudo-methods exported beside the SR methods: the network input and the reference.
LR, HR = "LR", "HR"
EXTENSIONS = {"uint8": ".png", "uint16": ".tif"}
INDEX_COLUMNS = ["image_id", "file", "class_name", "label", "height", "width", "dtype", "pixel_size_um"]


def file_stem(image_id: str) -> str:
    """The file name (without extension) of an image: its id with ``/`` written as ``__``."""
    parts = image_id.split("/")
    if any(part in ("", ".", "..") for part in parts) or "\\" in image_id or "\x00" in image_id:
        raise ValueError(f"image_id {image_id!r} cannot be a file name (empty, '.' or '..' part, or a backslash)")
    return "__".join(parts)


def pixel_sizes(meta: pd.DataFrame, factor: float = 1.0) -> dict[str, float]:
    """The pixel side in micrometres of each image of a shard's table that records one, by
    image_id (`karyosr.domain.pixel_sizes_um`; ``factor``: an HR table's sizes for its LR images)."""
    if "pixel_size_um" not in meta:
        return {}
    sizes = domain.pixel_sizes_um(meta, factor)
    return {image_id: float(size) for image_id, size in zip(meta["image_id"], sizes) if math.isfinite(size)}


def encode(image: np.ndarray, image_id: str = "", pixel_size_um: float = math.nan) -> tuple[str, bytes]:
    """(extension, file bytes): lossless PNG for uint8, TIFF for uint16 images; a TIFF carries
    ``pixel_size_um`` when it is known (an ImageJ calibration in microns)."""
    if image.ndim != 2 or image.dtype.name not in EXTENSIONS:
        raise ValueError(f"image {image_id!r}: cannot export a {image.dtype.name} image of shape {image.shape} "
                         "(2-D uint8 or uint16 expected)")
    extension = EXTENSIONS[image.dtype.name]
    if extension == ".tif":
        calibration = None
        if math.isfinite(pixel_size_um):
            per_micron = 1.0 / pixel_size_um
            calibration = tiff.Calibration((per_micron, per_micron), 1, {"unit": "micron"})
        return extension, tiff.encode(image, calibration)
    ok, data = cv2.imencode(extension, np.ascontiguousarray(image))
    if not ok:
        raise ValueError(f"image {image_id!r}: OpenCV could not encode it as {extension}")
    return extension, data.tobytes()


def select_pairs(export: dict, profiles: Iterable[str], methods_for: Callable[[str], list[str]]) -> list[tuple[str, str]]:
    """The (profile, method) folders the config asks for, LR and HR included in every profile.

    ``export.profiles`` and ``export.methods`` empty mean all; a method runs on the selected
    profiles that have it (learned models exist only on ``sr.profiles``). Names that match no
    profile or method are errors naming the key and the value, not silently empty folders.
    """
    if not export.get("images", False):
        return []
    profiles = list(profiles)
    chosen_profiles = export.get("profiles") or profiles
    unknown = [p for p in chosen_profiles if p not in profiles]
    if unknown:
        raise ValueError(f"config key export.profiles: {unknown} not among the degradation profiles {profiles}")
    available = {p: methods_for(p) for p in chosen_profiles}
    every_method = [m for p in chosen_profiles for m in available[p]]
    wanted = export.get("methods") or list(dict.fromkeys(every_method))
    unknown = [m for m in wanted if m not in every_method]
    if unknown:
        raise ValueError(f"config key export.methods: {unknown} not run on the exported profiles {chosen_profiles} "
                         f"(methods there: {sorted(set(every_method))})")
    clashing = [m for m in every_method if m in (LR, HR)]
    if clashing:
        raise ValueError(f"config: a method named {clashing[0]!r} clashes with the exported {LR}/{HR} folders")
    return [(p, m) for p in chosen_profiles for m in (LR, *[m for m in wanted if m in available[p]], HR)]


def export_images(shard_paths: Iterable[str | os.PathLike], keep: set[str], out_dir: str | os.PathLike,
                  labels: pd.DataFrame | None = None, sizes: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Write every image of the shards whose id is in ``keep`` to ``out_dir``; return the index.

    ``labels`` (image_id, class_name, label) fills the class columns for shards without them.
    ``sizes``: the exported images' pixel sides by image_id; by default each shard's own
    (:func:`pixel_sizes`), which HR shards record and LR and SR shards do not: give theirs from
    the HR shards' tables (``pixel_sizes(hr_meta, scale)`` for LR images, ``pixel_sizes(hr_meta)``
    for SR outputs, which have the HR images' size). Each file is written atomically;
    ``images.csv`` is written last, so a folder with an index is complete.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, names = [], {}
    for path in shard_paths:
        meta, images = shards.read_shard(path)
        known = pixel_sizes(meta) if sizes is None else sizes
        for record, image in zip(meta.to_dict("records"), images):
            image_id = record["image_id"]
            if image_id not in keep:
                continue
            size = known.get(image_id, math.nan)
            extension, data = encode(image, image_id, size)
            name = file_stem(image_id) + extension
            if name in names:
                raise ValueError(f"{path}: images {names[name]!r} and {image_id!r} both export as {name!r}")
            names[name] = image_id
            atomic.write_bytes(out_dir / name, data)
            rows.append({"image_id": image_id, "file": name, "class_name": record.get("class_name"),
                         "label": record.get("label"), "height": image.shape[0], "width": image.shape[1],
                         "dtype": image.dtype.name, "pixel_size_um": size})
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS).sort_values("image_id", kind="stable").reset_index(drop=True)
    missing = sorted(keep - set(index["image_id"]))
    if missing:
        raise ValueError(f"{len(missing)} test images are in none of the shards given, e.g. {missing[:3]}")
    if labels is not None and len(index):
        known = labels.drop_duplicates("image_id").set_index("image_id")
        for column in ("class_name", "label"):
            if column in known.columns:
                index[column] = index["image_id"].map(known[column]).astype(object)
    atomic.write_text(out_dir / "images.csv", index.to_csv(index=False))
    log.info("%d images written to %s", len(index), out_dir)
    return index


def ids_in_split(split: pd.DataFrame, name: str = "test") -> set[str]:
    """The image ids of one split of the split manifest (SR methods run on the test split)."""
    return set(split.loc[split["split"] == name, "image_id"])
