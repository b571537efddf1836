"""Rule ``whole_quality``: NIQE and PIQE of the enhanced whole images of one profile and, as method
``capture``, of the same images (or central crops) before enhancement; the summary per method."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from karyosr.io import shards
from karyosr.quality import niqe, scoring

log = logging.getLogger(__name__)

QUALITY_COLUMNS = ["image_id", "group", "slide", "magnification", "method", "profile", "height", "width", "niqe",
                   "piqe", "niqe_error"]
# The "before" rows of the quality table: each capture at its native size.
CAPTURE = "capture"


def quality_table(meta: pd.DataFrame, images: list[np.ndarray], pristine: niqe.PristineModel, method: str,
                  profile: str) -> pd.DataFrame:
    """NIQE and PIQE of whole images (one row each)."""
    scores = scoring.no_reference(images, pristine)
    missing = np.full(len(meta), None, dtype=object)
    table = pd.DataFrame({"image_id": meta["image_id"].to_numpy(), "group": meta["group"].to_numpy(),
                          "slide": meta["slide"].to_numpy() if "slide" in meta else missing,
                          "magnification": meta["magnification"].to_numpy() if "magnification" in meta else missing,
                          "method": method, "profile": profile,
                          "height": [im.shape[0] for im in images], "width": [im.shape[1] for im in images]})
    return pd.concat([table, scores.reset_index(drop=True)], axis=1)[QUALITY_COLUMNS]


def run(enhanced: dict[str, list[str]], ingest_shards, profile_name: str, pristine_path, out_table) -> None:
    """The quality table of one profile: every enhanced whole image (``enhanced`` maps a method to
    its shards) and, as method ``capture``, the same images before enhancement."""
    pristine = niqe.load_model(pristine_path)
    frames, crops = [], {}
    for method, paths in enhanced.items():
        for path in paths:
            meta, images = shards.read_shard(path)
            crops.update((r.image_id, (r.crop_y0, r.crop_y1, r.crop_x0, r.crop_x1)) for r in meta.itertuples())
            frames.append(quality_table(meta, images, pristine, method, profile_name))
    ids = set(crops)
    for path in ingest_shards:  # the same images (or central crops) before enhancement, one at a time
        for row, image in shards.iter_shard(path):
            if row["image_id"] in crops:
                y0, y1, x0, x1 = crops[row["image_id"]]
                frames.append(quality_table(pd.DataFrame([row]), [image[y0:y1, x0:x1]], pristine, CAPTURE,
                                            profile_name))
    table = pd.concat([f for f in frames if len(f)] or [pd.DataFrame(columns=QUALITY_COLUMNS)], ignore_index=True)
    shards.write_table(out_table, table.sort_values(["image_id", "method"], kind="stable").reset_index(drop=True))
    log.info("%s: NIQE/PIQE of %d captures, %d methods", profile_name, len(ids), len(enhanced))


def quality_summary(quality: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Mean (and standard deviation) NIQE and PIQE per method, the capture first, then ``order``;
    lower is better for both."""
    grouped = quality.groupby("method").agg(images=("image_id", "nunique"), niqe=("niqe", "mean"),
                                            niqe_std=("niqe", "std"), piqe=("piqe", "mean"), piqe_std=("piqe", "std"))
    methods = [m for m in [CAPTURE, *order] if m in grouped.index]
    return grouped.loc[methods].reset_index()
