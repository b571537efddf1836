"""Whole-slide enhancement: what the two whole-image works are for.

Digital magnification (SR-GAN microscopy sharpening) enlarges the parts of a slide that were
never photographed at high magnification; metaphase enhancement (ESRGAN transfer learning)
judges the enlarged spreads by no-reference quality, as no HR reference exists for them. So every
SR method (baselines and trained models of a paired profile) is applied to the *whole*
low-magnification captures of the test slides - each the low side of an accepted pair whose
nominal ratio is the profile's scale - with seamless tiles (:func:`karyosr.sr.infer.predict_tiled`),
and NIQE and PIQE are measured on every capture before (at its native size) and after.

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
                 "seconds"]
QUALITY_COLUMNS = ["image_id", "slide", "magnification", "method", "profile", "height", "width", "niqe", "piqe",
                   "niqe_error"]
# The "before" rows of the quality table: each capture at its native size.
CAPTURE = "capture"


def captures_to_enhance(meta: pd.DataFrame, pairs: pd.DataFrame, splits: dict[str, str], scale: int) -> list[int]:
    """Row positions in ``meta`` of the test-split captures that are the low side of an accepted
    pair whose nominal ratio is ``scale``: the images a model of that paired profile was trained to
    enlarge. Slides without a split entry are not test slides."""
    accepted = pairs[pairs["accepted"].astype(bool)]
    lows = {row.low_id for row in accepted.itertuples(index=False) if matches_profile(row.nominal_ratio, scale)}
    return [i for i, (image_id, group) in enumerate(zip(meta["image_id"], meta["group"]))
            if image_id in lows and splits.get(group) == "test"]


def enhance(image: np.ndarray, scale: int, method: str, model=None, device=None, infer_cfg: dict | None = None,
            unsharp: dict | None = None) -> np.ndarray:
    """``image`` enlarged ``scale`` times by an interpolation baseline (``model`` None) or by a
    trained SR model on ``device`` in seamless tiles of ``infer_cfg['tile']`` LR pixels (whole when 0)."""
    if model is None:
        return upscale(image, scale, method, unsharp)
    from karyosr.sr.infer import predict_tiled  # torch only where a model runs

    cfg = infer_cfg or {}
    return predict_tiled(model, image[None], scale, data_range(image.dtype), device,
                         int(cfg.get("tile", 0)), int(cfg.get("tile_overlap", 16)),
                         batch_size=int(cfg.get("infer_batch_size", 64)), bf16=bool(cfg.get("bf16", True)))[0]


def run_enhance(in_shard, pairs_table, split_manifest, method: str, profile_name: str, profile: dict,
                infer_cfg: dict, unsharp: dict, model_path, out_shard, threads: int = 1) -> None:
    """Enlarge this shard's test captures of ``profile_name`` with ``method`` (a baseline, or the
    SR model in ``model_path``) and write them as a shard beside the run time of each."""
    meta, images = shards.read_shard(in_shard)
    pairs = shards.read_table(pairs_table)
    split = shards.read_table(split_manifest, columns=["group", "split"]).drop_duplicates()
    scale = int(profile["scale"])
    chosen = captures_to_enhance(meta, pairs, dict(zip(split["group"], split["split"])), scale) if len(meta) else []
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
    for i in chosen:
        start = time.perf_counter()
        out.append(enhance(images[i], scale, method, model, device, infer_cfg, unsharp))
        rows.append({**meta.iloc[i][["image_id", "dataset", "group", "slide", "magnification"]].to_dict(),
                     "split": "test", "method": method, "profile": profile_name, "scale": scale,
                     "seconds": time.perf_counter() - start})
        log.info("%s: %s %dx%d -> %dx%d in %.1f s", method, rows[-1]["image_id"], *images[i].shape,
                 *out[-1].shape, rows[-1]["seconds"])
    shards.write_shard(out_shard, pd.DataFrame(rows, columns=WHOLE_COLUMNS), out)


def quality_table(meta: pd.DataFrame, images: list[np.ndarray], pristine: niqe.PristineModel, method: str,
                  profile: str) -> pd.DataFrame:
    """NIQE and PIQE of whole images (one row each)."""
    scores = scoring.no_reference(images, pristine)
    table = pd.DataFrame({"image_id": meta["image_id"].to_numpy(), "slide": meta["slide"].to_numpy(),
                          "magnification": meta["magnification"].to_numpy(), "method": method, "profile": profile,
                          "height": [im.shape[0] for im in images], "width": [im.shape[1] for im in images]})
    return pd.concat([table, scores.reset_index(drop=True)], axis=1)[QUALITY_COLUMNS]


def run_whole_quality(enhanced: dict[str, list[str]], ingest_shards, profile_name: str, pristine_path,
                      out_table) -> None:
    """The quality table of one paired profile: every enlarged capture (``enhanced`` maps a method
    to its shards) and, as method ``capture``, the same captures before enhancement."""
    pristine = niqe.load_model(pristine_path)
    frames, ids = [], set()
    for method, paths in enhanced.items():
        for path in paths:
            meta, images = shards.read_shard(path)
            ids.update(meta["image_id"])
            frames.append(quality_table(meta, images, pristine, method, profile_name))
    for path in ingest_shards:
        meta, images = shards.read_shard(path)
        keep = [i for i, image_id in enumerate(meta["image_id"]) if image_id in ids]
        frames.append(quality_table(meta.iloc[keep].reset_index(drop=True), [images[i] for i in keep], pristine,
                                    CAPTURE, profile_name))
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
    region = low[y0:y0 + crop, x0:x0 + crop]
    axes[2].imshow(cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST), cmap="gray",
                   vmin=0, vmax=255)
    axes[2].set_title("before (pixels)", fontsize=7)
    for ax, (method, image) in zip(axes[3:], enhanced.items()):
        ax.imshow(image[y0 * scale:(y0 + crop) * scale, x0 * scale:(x0 + crop) * scale], cmap="gray", vmin=0, vmax=255)
        ax.set_title(method, fontsize=7)
    for ax in axes:
        ax.set_axis_off()


def run_slide_figure(ingest_shards, pairs_table, enhanced: dict[str, list[str]], scale: int, out_png) -> None:
    """The report figure of one paired profile: a row per enhanced capture (test slides)."""
    from karyosr.report.figures import pyplot, save_figure

    pairs = shards.read_table(pairs_table)
    pairs = pairs[pairs["accepted"].astype(bool)]
    outputs: dict[str, dict[str, np.ndarray]] = {}
    for method, paths in enhanced.items():
        for path in paths:
            meta, images = shards.read_shard(path)
            for image_id, image in zip(meta["image_id"], images):
                outputs.setdefault(image_id, {})[method] = image
    # Only the enhanced captures and their registered views are held in memory.
    needed = set(outputs) | set(pairs.loc[pairs["low_id"].isin(outputs), "high_id"])
    captures: dict[str, np.ndarray] = {}
    for path in ingest_shards:
        meta, images = shards.read_shard(path)
        captures.update((i, im) for i, im in zip(meta["image_id"], images) if i in needed)
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


def quality_findings(summary: pd.DataFrame, profile: str) -> list[str]:
    """Mean NIQE and PIQE of the whole captures after each method against before (lower is better)."""
    if CAPTURE not in set(summary["method"]) or len(summary) < 2:
        return []
    before = summary.set_index("method").loc[CAPTURE]
    changes = [f"{row.method} NIQE {row.niqe:.2f} ({row.niqe - before.niqe:+.2f}), PIQE {row.piqe:.1f} "
               f"({row.piqe - before.piqe:+.1f})" for row in summary.itertuples() if row.method != CAPTURE]
    return [f"{profile}, whole test captures ({int(before.images)}) before enhancement: NIQE {before.niqe:.2f}, "
            f"PIQE {before.piqe:.1f}; after: " + "; ".join(changes) + " (lower is better)."]
