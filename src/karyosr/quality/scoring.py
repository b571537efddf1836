"""The metrics rules: every SR output scored against its HR image (PSNR, SSIM, MSE over the whole
image and inside the chromosome) and without reference (NIQE, PIQE), the HR images' own
no-reference quality, the run's pristine NIQE model, and the summary per profile and method.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from karyosr.io import shards
from karyosr.io.atomic import atomic_path
from karyosr.quality import niqe, piqe
from karyosr.quality.full_reference import foreground_masks, score

log = logging.getLogger(__name__)


def no_reference(images, pristine: niqe.PristineModel) -> pd.DataFrame:
    """NIQE (against the pristine model, with its feature set and patch size) and PIQE per image;
    an image NIQE cannot score (flat, smaller than a patch) gets no value and the reason in
    ``niqe_error``."""
    niqe_values, errors = [], []
    for image in images:
        try:
            niqe_values.append(pristine.score(image))
            errors.append("")
        except ValueError as exc:
            niqe_values.append(np.nan)
            errors.append(str(exc))
    return pd.DataFrame({"niqe": niqe_values, "piqe": [piqe.piqe(im) for im in images], "niqe_error": errors})


METRIC_COLUMNS = ["psnr", "ssim", "mse", "psnr_fg", "ssim_fg", "mse_fg", "niqe", "piqe"]


def run(hr_shard, sr_shard, params: dict, pristine_path, out_table) -> None:
    sr_meta, sr_images = shards.read_shard(sr_shard)
    hr_meta, hr_images = shards.read_shard(hr_shard)
    hr_meta = hr_meta.reset_index(drop=True)
    position = {image_id: i for i, image_id in enumerate(hr_meta["image_id"])}
    missing = [i for i in sr_meta["image_id"] if i not in position]
    if missing:
        raise ValueError(f"{sr_shard}: images without an HR counterpart in {hr_shard}: {missing[:5]}")
    rows = [position[i] for i in sr_meta["image_id"]]
    table = sr_meta[["image_id", "label", "class_name", "profile", "method"]].reset_index(drop=True)
    if rows:
        hr = shards.stack([hr_images[i] for i in rows])
        sr = shards.stack(sr_images)
        if "polarity" in hr_meta:
            masks = foreground_masks(hr, hr_meta["polarity"].iloc[rows], hr_meta["threshold_level"].iloc[rows],
                                     params["foreground_dilation"])
        else:  # registered tiles of whole images (paired profiles): no chromosome mask, the whole tile counts
            masks = np.ones(hr.shape, bool)
        quality = no_reference(sr_images, niqe.load_model(pristine_path))
        table = pd.concat([table, score(hr, sr, params, masks), quality], axis=1)
    else:
        table = table.assign(**{c: pd.Series(dtype=float) for c in METRIC_COLUMNS}, niqe_error=pd.Series(dtype=str))
    shards.write_table(out_table, table)
    log.info("%d images scored", len(table))


def run_hr_quality(hr_shard, split_manifest, params: dict, pristine_path, out_table) -> None:
    """NIQE and PIQE of the HR test images: the 'after' every method is measured against."""
    meta, images = shards.read_shard(hr_shard)
    test = set(shards.read_table(split_manifest, columns=["image_id", "split"]).query("split == 'test'")["image_id"])
    keep = meta["image_id"].isin(test).to_numpy()
    meta = meta.loc[keep, ["image_id", "label", "class_name"]].reset_index(drop=True)
    images = [im for im, k in zip(images, keep) if k]
    table = pd.concat([meta.assign(profile="", method="HR"),
                       no_reference(images, niqe.load_model(pristine_path))], axis=1)
    shards.write_table(out_table, table)


def fit_niqe_model(hr_shards, split_manifest, params: dict, out_path) -> None:
    """The pristine NIQE model from the HR training images of this run (natural-scene models do
    not describe chromosome images), or the model file named in the config, which keeps its own
    feature set and patch size (a published model: release features, 96 px patches)."""
    if params["niqe_params_file"]:
        model = niqe.load_model(params["niqe_params_file"])
        log.info("NIQE pristine model from %s (%s features, patch size %d)", params["niqe_params_file"],
                 model.features, model.patch_size)
    else:
        train = set(shards.read_table(split_manifest, columns=["image_id", "split"]).query("split == 'train'")["image_id"])
        images = []
        for path in hr_shards:
            meta, shard_images = shards.read_shard(path)
            images += [im for i, im in zip(meta["image_id"], shard_images) if i in train]
        mu, cov = niqe.fit_pristine(images, patch_size=params["niqe_patch_size"],
                                    sharpness_threshold=params["niqe_sharpness_threshold"])
        model = niqe.PristineModel(mu, cov, "paper", params["niqe_patch_size"])
        log.info("NIQE pristine model fitted on %d HR training images", len(images))
    with atomic_path(out_path) as tmp:
        niqe.save_model(tmp, model)


def summarise(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count per profile x method (NaN-free: NIQE's mean is over the
    images it could score)."""
    grouped = per_image.groupby(["profile", "method"], sort=True)
    summary = grouped[METRIC_COLUMNS].agg(["mean", "std"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    summary["n_images"] = grouped.size()
    return summary.reset_index()
