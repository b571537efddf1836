"""Whole-image enhancement: what the two whole-image works are for.

Digital magnification (SR-GAN microscopy sharpening) enlarges the parts of a slide that were
never photographed at high magnification; metaphase enhancement (ESRGAN transfer learning)
judges the enlarged spreads by no-reference quality, as no HR reference exists for them. So every
SR method (baselines and trained models of a paired profile) is applied to the *whole*
low-magnification captures of the test slides - each the low side of an accepted pair whose
nominal ratio is the profile's scale - with seamless tiles (:func:`karyosr.sr.infer.predict_tiled`),
and NIQE and PIQE are measured on every capture before (at its native size) and after. For a
folder of whole images (layout ``images``: metaphase photographs, microscope fields, slices) the
images enhanced are the ORIGINAL held-out images of the test groups, not their synthetic LR:
restoration profiles (scale 1) clean them at native size, SR profiles enlarge them. An image whose
output would exceed ``enhance.max_pixels`` is enhanced on its central crop that fits, the same crop
scored before and after.

Pure cores (:func:`captures_to_enhance`, :func:`enhance`, :func:`slide_overview`) and thin
shard/table I/O (``run_*``) for the rules ``enhance_whole``, ``whole_quality`` and ``slide_figure``.
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import pandas as pd

from karyosr.dataset.pairs import matches_profile, registration_of
from karyosr.dataset.registration import Registration, cut_pair
from karyosr.io import shards
from karyosr.io.images import data_range
from karyosr.quality import niqe, scoring
from karyosr.resize import imresize
from karyosr.sr.upscale import upscale

log = logging.getLogger(__name__)

WHOLE_COLUMNS = ["image_id", "dataset", "group", "slide", "magnification", "split", "method", "profile", "scale",
                 "crop_y0", "crop_y1", "crop_x0", "crop_x1", "seconds"]
QUALITY_COLUMNS = ["image_id", "group", "slide", "magnification", "method", "profile", "height", "width", "niqe",
                   "piqe", "niqe_error"]
# The "before" rows of the quality table: each capture at its native size.
CAPTURE = "capture"


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


def run_enhance(in_shard, pairs_table, split_manifest, method: str, profile_name: str, profile: dict,
                infer_cfg: dict, unsharp: dict, model_path, out_shard, threads: int = 1,
                max_pixels: int = 16_000_000) -> None:
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
    shards.write_shard(out_shard, pd.DataFrame(rows, columns=WHOLE_COLUMNS), out)


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


def run_whole_quality(enhanced: dict[str, list[str]], ingest_shards, profile_name: str, pristine_path,
                      out_table) -> None:
    """The quality table of one paired profile: every enlarged capture (``enhanced`` maps a method
    to its shards) and, as method ``capture``, the same captures before enhancement."""
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


def _stretch(image: np.ndarray) -> np.ndarray:
    """8-bit display copy spanning the 1st-99th percentile."""
    lo, hi = np.percentile(image, (1, 99))
    return np.clip((image.astype(np.float32) - lo) * 255.0 / max(hi - lo, 1e-6), 0, 255).astype(np.uint8)


def registration_difference(low: np.ndarray, view: np.ndarray, registration: Registration,
                            scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(LR box, the view resampled onto it, absolute difference) after the view's exposure is
    matched to the capture's (mean and spread): what remains is misregistration and optics."""
    lr, hr = cut_pair(low, view, registration, scale=scale)
    down = imresize(hr.astype(np.float64), scale=1 / scale, output_shape=lr.shape)
    lr_f = lr.astype(np.float64)
    down = (down - down.mean()) / max(down.std(), 1e-6) * lr_f.std() + lr_f.mean()
    return lr, np.clip(down, 0, data_range(lr.dtype)), np.abs(lr_f - down)


def draw_slide(axes, low: np.ndarray, views: list[tuple[np.ndarray, Registration, str]],
               enhanced: dict[str, np.ndarray], scale: int, crop: int = 48) -> None:
    """One slide on a row of ``3 + len(enhanced)`` matplotlib axes: the capture with each registered
    view's footprint drawn, the difference image of the first view after registration, and one
    ``crop``-pixel LR region (outside the views where possible: never photographed at high
    magnification) before (pixels enlarged) and after each method."""
    crop = min(crop, *low.shape)
    footprints = [registration.transform.corners(view.shape) for view, registration, _ in views]
    y0, x0 = _crop_outside(low, footprints, crop)
    shown = cv2.cvtColor(_stretch(low), cv2.COLOR_GRAY2RGB)
    line = max(1, low.shape[0] // 200)
    for corners in footprints:
        cv2.polylines(shown, [np.round(corners).astype(np.int32)], True, (230, 40, 40), line)
    cv2.rectangle(shown, (x0, y0), (x0 + crop, y0 + crop), (40, 120, 230), line)
    axes[0].imshow(shown)
    axes[0].set_title("capture: views (red), crop (blue)", fontsize=7)
    if views:
        view, registration, label = views[0]
        axes[1].imshow(registration_difference(low, view, registration, scale)[2], cmap="magma")
        axes[1].set_title(f"|capture - {label} view|, registered", fontsize=7)
    else:  # a held-out whole image: no registered view, the region at its native pixels instead
        axes[1].imshow(low[y0:y0 + crop, x0:x0 + crop], cmap="gray", vmin=0, vmax=data_range(low.dtype))
        axes[1].set_title("region, native pixels", fontsize=7)
    region = low[y0:y0 + crop, x0:x0 + crop]
    axes[2].imshow(cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST), cmap="gray",
                   vmin=0, vmax=data_range(low.dtype))
    axes[2].set_title("before (pixels)", fontsize=7)
    for ax, (method, image) in zip(axes[3:], enhanced.items()):
        ax.imshow(image[y0 * scale:(y0 + crop) * scale, x0 * scale:(x0 + crop) * scale], cmap="gray", vmin=0,
                  vmax=data_range(image.dtype))
        ax.set_title(method, fontsize=7)
    for ax in axes:
        ax.set_axis_off()


def run_slide_figure(ingest_shards, pairs_table, enhanced: dict[str, list[str]], scale: int, out_png) -> None:
    """The report figure of one profile: a row per enhanced capture or held-out whole image (with
    ``pairs_table`` None: no registered views to draw)."""
    from karyosr.report.figures import pyplot, save_figure

    pairs = shards.read_table(pairs_table) if pairs_table else pd.DataFrame(columns=["low_id", "high_id", "accepted"])
    pairs = pairs[pairs["accepted"].astype(bool)]
    outputs: dict[str, dict[str, np.ndarray]] = {}
    crops: dict[str, tuple[int, int, int, int]] = {}
    for method, paths in enhanced.items():
        for path in paths:
            meta, images = shards.read_shard(path)
            for row, image in zip(meta.itertuples(), images):
                outputs.setdefault(row.image_id, {})[method] = image
                crops[row.image_id] = (row.crop_y0, row.crop_y1, row.crop_x0, row.crop_x1)
    # Only the enhanced captures (the part that was enhanced) and their registered views are held.
    needed = set(outputs) | set(pairs.loc[pairs["low_id"].isin(outputs), "high_id"])
    captures: dict[str, np.ndarray] = {}
    for path in ingest_shards:
        for row, image in shards.iter_shard(path):
            if row["image_id"] in crops:
                y0, y1, x0, x1 = crops[row["image_id"]]
                captures[row["image_id"]] = image[y0:y1, x0:x1].copy()
            elif row["image_id"] in needed:
                captures[row["image_id"]] = image
    plt = pyplot()
    ids = sorted(outputs)
    columns = 3 + len(enhanced)
    fig, axes = plt.subplots(max(1, len(ids)), columns, figsize=(2.4 * columns, 2.6 * max(1, len(ids))), squeeze=False)
    for row, image_id in zip(axes, ids):
        views = [(captures[p.high_id], registration_of(p), str(p.high_magnification))
                 for p in pairs[pairs["low_id"] == image_id].itertuples(index=False)]
        draw_slide(row, captures[image_id], views, {m: outputs[image_id][m] for m in enhanced if m in outputs[image_id]},
                   scale)
        row[0].text(0, -0.25, image_id, transform=row[0].transAxes, fontsize=6)
    if not ids:
        axes[0][0].text(0.5, 0.5, "no test capture to enhance", ha="center")
        for ax in axes[0]:
            ax.set_axis_off()
    fig.tight_layout()
    save_figure(fig, out_png)


def _crop_outside(image: np.ndarray, footprints: list[np.ndarray], crop: int) -> tuple[int, int]:
    """Top-left corner of the ``crop`` square with the most structure (grey-level spread), on a
    coarse grid, whose centre lies outside every view footprint where one such square exists."""
    h, w = image.shape
    crop = min(crop, h, w)
    candidates = []
    for y in np.linspace(0, h - crop, 8).astype(int):
        for x in np.linspace(0, w - crop, 8).astype(int):
            centre = (float(x + crop / 2), float(y + crop / 2))
            outside = all(cv2.pointPolygonTest(f.astype(np.float32), centre, False) < 0 for f in footprints)
            candidates.append((outside, float(image[y:y + crop, x:x + crop].std()), int(y), int(x)))
    _, _, y, x = max(candidates)
    return y, x


REGISTRATION_COLUMNS = ["slide", "low_magnification", "high_magnification", "cx", "cy", "scale", "rotation_deg",
                        "score", "overlap", "accepted", "reason", "seconds"]


def registration_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """The registration of every pair, rounded for reading: where each view lies in its capture
    (centre in capture pixels, scale of view to capture, rotation), the match score and overlap."""
    table = pairs[REGISTRATION_COLUMNS].copy()
    return table.round({"cx": 1, "cy": 1, "scale": 4, "rotation_deg": 2, "score": 3, "overlap": 3, "seconds": 2})


def rejected_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """Rejected pairs in the report's table of set-aside inputs (stage, image_id, source, reason)."""
    rejected = pairs[~pairs["accepted"].astype(bool)]
    return pd.DataFrame({"stage": "register", "image_id": rejected["high_id"] + " in " + rejected["low_id"],
                         "source": rejected["high_source"], "reason": rejected["reason"]})


def registration_findings(pairs: pd.DataFrame) -> list[str]:
    """How many pairs registered and how well, and why the others were rejected."""
    if not len(pairs):
        return ["No pair of captures to register: every slide needs two magnifications."]
    accepted = pairs[pairs["accepted"].astype(bool)]
    line = (f"Registration: {len(accepted)} of {len(pairs)} pairs of captures accepted"
            + (f" (match score median {accepted['score'].median():.3f}, lowest {accepted['score'].min():.3f}; "
               f"{accepted['seconds'].median():.2f} s per pair)" if len(accepted) else ""))
    reasons = pairs.loc[~pairs["accepted"].astype(bool), "reason"].value_counts()
    if len(reasons):
        line += "; rejected: " + "; ".join(f"{n} x {reason}" for reason, n in reasons.items())
    return [line + "."]


REFERENCES = ("bicubic", "lanczos")
GAIN_COLUMNS = ["profile", "method", "versus", "groups", "images", "psnr_gain", "psnr_ci_low", "psnr_ci_high",
                "psnr_fg_gain", "psnr_fg_ci_low", "psnr_fg_ci_high"]


def _clustered(values: pd.Series, groups: pd.Series, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean of per-image values and its bootstrap interval resampling whole groups (slides, patients);
    no interval (NaN) from a single group (`karyosr.classify.metrics.bootstrap_ci`)."""
    from karyosr.classify.metrics import bootstrap_ci  # statistics only where a table needs them

    values = values.dropna()
    if not len(values):
        return float("nan"), float("nan"), float("nan")
    low, high = bootstrap_ci(values.to_numpy(), n_boot, seed, clusters=groups.reindex(values.index).to_numpy())
    return float(values.mean()), low, high


def gain_table(per_image: pd.DataFrame, groups: pd.Series, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """Every method's PSNR gain over bicubic (MATLAB) and over Lanczos, over the whole tile and inside
    the object, per profile: mean over held-out tiles with a bootstrap interval over groups (tiles of
    one slide or patient share its staining and optics). ``groups`` maps image_id to group."""
    rows = []
    for profile, part in per_image.groupby("profile", sort=False):
        psnr = part.pivot(index="image_id", columns="method", values="psnr")
        inside = part.pivot(index="image_id", columns="method", values="psnr_fg")
        tile_groups = groups.reindex(psnr.index)
        for versus in [r for r in REFERENCES if r in psnr]:
            for method in [m for m in psnr if m != versus]:
                whole = _clustered(psnr[method] - psnr[versus], tile_groups, n_boot, seed)
                fg = _clustered(inside[method] - inside[versus], tile_groups, n_boot, seed)
                rows.append({"profile": profile, "method": method, "versus": versus,
                             "groups": int(tile_groups.nunique()), "images": len(psnr),
                             "psnr_gain": whole[0], "psnr_ci_low": whole[1], "psnr_ci_high": whole[2],
                             "psnr_fg_gain": fg[0], "psnr_fg_ci_low": fg[1], "psnr_fg_ci_high": fg[2]})
    return pd.DataFrame(rows, columns=GAIN_COLUMNS).round(3)


CHANGE_COLUMNS = ["method", "images", "groups", "niqe_change", "niqe_ci_low", "niqe_ci_high", "piqe_change",
                  "piqe_ci_low", "piqe_ci_high"]


def quality_changes(quality: pd.DataFrame, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """Per method, the mean change of NIQE and PIQE of each held-out whole image (after minus
    before: negative is an improvement) with a bootstrap interval over groups."""
    rows = []
    for metric in ("niqe", "piqe"):
        table = quality.pivot(index="image_id", columns="method", values=metric)
        groups = quality.drop_duplicates("image_id").set_index("image_id")["group"].reindex(table.index)
        for method in [m for m in table if m != CAPTURE] if CAPTURE in table else []:
            mean, low, high = _clustered(table[method] - table[CAPTURE], groups, n_boot, seed)
            rows.append({"method": method, "metric": metric, "change": mean, "ci_low": low, "ci_high": high,
                         "images": int(table[method].notna().sum()), "groups": int(groups.nunique())})
    if not rows:
        return pd.DataFrame(columns=CHANGE_COLUMNS)
    long = pd.DataFrame(rows)
    wide = long.pivot(index="method", columns="metric", values=["change", "ci_low", "ci_high"])
    wide.columns = [f"{metric}_{stat}" for stat, metric in wide.columns]
    counts = long.drop_duplicates("method").set_index("method")[["images", "groups"]]
    out = counts.join(wide)
    out = out.reindex(list(dict.fromkeys(long["method"]))).reset_index()
    return out[CHANGE_COLUMNS].round(3)


NO_REFERENCE_CAVEAT = ("NIQE and PIQE reward some artefacts (nearest-neighbour blocks score well on PIQE, and any "
                       "sharpening can lower both), so no method is called best on them alone: read them beside the "
                       "full-reference PSNR/SSIM on held-out tiles above.")


def change_findings(changes: pd.DataFrame, profile: str) -> list[str]:
    """Whether each method lowers NIQE and PIQE of the held-out whole images, by how much, with its
    interval over groups; and the caveat that no-reference scores are never a ranking alone."""
    from karyosr.report.findings import describe_difference

    if not len(changes):
        return []
    parts = []
    for row in changes.itertuples():
        verdicts = []
        for metric, digits in (("niqe", 2), ("piqe", 1)):
            value, low, high = (getattr(row, f"{metric}_{s}") for s in ("change", "ci_low", "ci_high"))
            if pd.isna(value):
                continue
            if pd.isna(low):  # one held-out group: the change is reported without a verdict
                verdicts.append(f"changes {metric.upper()} by {value:+.{digits}f} (one held-out group: no interval)")
                continue
            word = "lowers" if high < 0 else "raises" if low > 0 else "does not measurably change"
            verdicts.append(f"{word} {metric.upper()} by {describe_difference(value, low, high, '', digits)}")
        parts.append(f"{row.method} " + " and ".join(verdicts))
    return [f"{profile}, held-out whole images ({int(changes['images'].max())} in {int(changes['groups'].max())} "
            "groups), after minus before: " + "; ".join(parts) + ". " + NO_REFERENCE_CAVEAT]


def tile_summary(counts: pd.DataFrame) -> pd.DataFrame:
    """Per split: images, tiles cut, kept, dropped as flat, images padded and images that gave no tile."""
    table = counts.assign(no_tile=counts["kept"] == 0).groupby("split", sort=False).agg(
        images=("image_id", "size"), groups=("group", "nunique"), tiles=("tiles", "sum"), kept=("kept", "sum"),
        flat_dropped=("flat", "sum"), padded=("padded", "sum"), without_tiles=("no_tile", "sum"))
    return table.reindex([s for s in ("train", "val", "test") if s in table.index]).reset_index()
