"""Paired HR/LR training data for super-resolution: loading from shards, patch sampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from karyosr.io import shards
from karyosr.io.images import data_range


@dataclass
class Pairs:
    """HR and LR images of one split, aligned by image_id, as (N, H, W) and (N, h, w) arrays."""

    image_ids: list[str]
    hr: np.ndarray
    lr: np.ndarray
    boxes: np.ndarray  # (N, 4) chromosome box in HR pixels: y0, y1, x0, x1
    scale: int

    @property
    def peak(self) -> float:
        return data_range(self.hr.dtype)


def _chromosome_boxes(meta: pd.DataFrame, shape: tuple[int, int]) -> np.ndarray:
    """Where crop_filter placed the chromosome inside the padded square, the box of the object in a
    tile of a whole image (karyosr.dataset.tiles), or the whole image for the registered tiles of a
    paired profile."""
    if "object_y0" in meta:
        return meta[["object_y0", "object_y1", "object_x0", "object_x1"]].to_numpy(int)
    if "pad_top" not in meta:
        return np.tile(np.array([0, shape[0], 0, shape[1]]), (len(meta), 1))
    height = np.round((meta["crop_y1"] - meta["crop_y0"]) * meta["crop_scale"]).to_numpy(int)
    width = np.round((meta["crop_x1"] - meta["crop_x0"]) * meta["crop_scale"]).to_numpy(int)
    top, left = meta["pad_top"].to_numpy(int), meta["pad_left"].to_numpy(int)
    return np.stack([top, top + height, left, left + width], axis=1)


def load_pairs(hr_shards, lr_shards, split: str) -> Pairs:
    hr_meta, hr_images = [], []
    for path in hr_shards:
        meta, images = shards.read_shard(path)
        hr_meta.append(meta)
        hr_images.extend(images)
    lr_meta, lr_images = [], []
    for path in lr_shards:
        meta, images = shards.read_shard(path)
        keep = (meta["split"] == split).to_numpy()
        lr_meta.append(meta[keep])
        lr_images.extend(im for im, k in zip(images, keep) if k)
    hr_all = pd.concat(hr_meta, ignore_index=True)
    lr_all = pd.concat(lr_meta, ignore_index=True)
    if lr_all.empty:
        raise ValueError(f"no {split!r} images in the LR shards {list(lr_shards)[:2]}…")
    order = np.argsort(lr_all["image_id"].to_numpy(dtype=str), kind="stable")
    lr_all = lr_all.iloc[order].reset_index(drop=True)
    lr_images = [lr_images[i] for i in order]
    hr_index = pd.Series(np.arange(len(hr_all)), index=hr_all["image_id"])
    missing = set(lr_all["image_id"]) - set(hr_index.index)
    if missing:
        raise ValueError(f"LR images without an HR counterpart: {sorted(missing)[:5]}")
    rows = hr_index.loc[lr_all["image_id"]].to_numpy()
    hr = shards.stack([hr_images[i] for i in rows])
    return Pairs(
        image_ids=list(lr_all["image_id"]),
        hr=hr,
        lr=shards.stack(lr_images),
        boxes=_chromosome_boxes(hr_all.iloc[rows], hr.shape[1:]),
        scale=int(lr_all["scale"].iloc[0]),
    )


class PatchSampler:
    """Random paired patches with flips and 90° rotations.

    Single-chromosome images are mostly background; ``foreground_fraction`` of the patches are
    placed over the chromosome so training steps are not spent on flat background. All random
    draws use torch's global generator (checkpointed by the engine).
    """

    def __init__(self, pairs: Pairs, patch_size: int, batch_size: int, foreground_fraction: float = 0.8,
                 augment: bool = True):
        scale = pairs.scale
        self.lr_patch = min(patch_size // scale, pairs.lr.shape[1], pairs.lr.shape[2])
        if self.lr_patch < 1:
            raise ValueError(f"patch_size {patch_size} is smaller than the scale {scale}")
        self.pairs, self.batch_size = pairs, batch_size
        self.foreground_fraction, self.augment = foreground_fraction, augment

    def _corner(self, index: int, lr_size: int, box_lo: int, box_hi: int, foreground: bool) -> int:
        top = lr_size - self.lr_patch
        if foreground:
            centre = (box_lo + float(torch.rand(())) * max(box_hi - box_lo, 1)) / self.pairs.scale
            return int(min(max(round(centre - self.lr_patch / 2), 0), top))
        return int(torch.randint(0, top + 1, ()))

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        pairs, scale, p = self.pairs, self.pairs.scale, self.lr_patch
        indices = torch.randint(0, len(pairs.hr), (self.batch_size,)).tolist()
        lr_batch, hr_batch = [], []
        for i in indices:
            y0, y1, x0, x1 = pairs.boxes[i]
            foreground = bool(torch.rand(()) < self.foreground_fraction)
            ly = self._corner(i, pairs.lr.shape[1], y0, y1, foreground)
            lx = self._corner(i, pairs.lr.shape[2], x0, x1, foreground)
            lr = pairs.lr[i, ly : ly + p, lx : lx + p]
            hr = pairs.hr[i, ly * scale : (ly + p) * scale, lx * scale : (lx + p) * scale]
            if self.augment:
                k = int(torch.randint(0, 4, ()))
                flip = bool(torch.rand(()) < 0.5)
                lr, hr = np.rot90(lr, k), np.rot90(hr, k)
                if flip:
                    lr, hr = lr[:, ::-1], hr[:, ::-1]
            lr_batch.append(lr)
            hr_batch.append(hr)
        return np.stack(lr_batch), np.stack(hr_batch)
