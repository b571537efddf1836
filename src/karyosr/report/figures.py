"""The report's figures: quality box plots, training curves, sample grids, the figure of the
held-out whole images before and after enhancement, confusion matrices and t-SNE of classifier
features, written as PNG (and SVG) with matplotlib's Agg backend."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pandas as pd

from karyosr.dataset.pairs import registration_of
from karyosr.dataset.registration import Registration, cut_pair
from karyosr.io import atomic, shards
from karyosr.io.images import data_range
from karyosr.labels import CLASS_NAMES, N_CLASSES
from karyosr.resize import imresize


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, png, svg=None) -> None:
    plt = pyplot()
    for path, fmt in ((png, "png"), (svg, "svg")):
        if path:
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=110, metadata={"Date": None} if fmt == "svg" else None)
            atomic.write_bytes(path, buffer.getvalue())
    plt.close(fig)


def quality_boxplots(per_image: pd.DataFrame, hr_quality: pd.DataFrame, profile: str, methods: list[str],
                     out_png, out_svg) -> None:
    """NIQE and PIQE before/after enhancement: a box (quartiles, median, whiskers, outliers) per
    method on this profile's test images, and the HR images for reference."""
    rows = per_image[per_image["profile"] == profile]
    groups = {m: rows[rows["method"] == m] for m in methods if m in set(rows["method"])}
    no_reference_boxplots({**groups, "HR": hr_quality}, profile, out_png, out_svg)


def no_reference_boxplots(groups: dict[str, pd.DataFrame], label: str, out_png, out_svg=None) -> None:
    """A NIQE and a PIQE panel with one box per named table of scores (columns niqe, piqe)."""
    plt = pyplot()
    names = list(groups)
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.1 * len(names)) * 2, 4))
    for ax, metric in zip(axes, ("niqe", "piqe")):
        ax.boxplot([groups[n][metric].dropna().to_numpy() for n in names], tick_labels=names, showfliers=True)
        ax.set_title(f"{metric.upper()} (lower is better), {label}")
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    save_figure(fig, out_png, out_svg)


def training_curves(histories: dict[str, pd.DataFrame], out_png, out_svg=None, metric: str = "val_psnr",
                    metric_title: str = "validation PSNR (dB)") -> None:
    """Training loss and a validation metric per epoch, one line per model; dots mark kept epochs."""
    plt = pyplot()
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(12, 4))
    for name, history in sorted(histories.items()):
        loss = next(c for c in ("train_total", "train_pixel", "train_cross_entropy") if c in history)
        line, = loss_ax.plot(history["epoch"], history[loss], label=name)
        metric_ax.plot(history["epoch"], history[metric], label=name, color=line.get_color())
        best = history[history["best"]]
        metric_ax.plot(best["epoch"], best[metric], "o", color=line.get_color())
    loss_ax.set(title="training loss", xlabel="epoch", yscale="log")
    metric_ax.set(title=f"{metric_title}; dot = epoch kept", xlabel="epoch")
    metric_ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out_png, out_svg)


def pick_samples(split: pd.DataFrame, n: int) -> list[str]:
    """A fixed, class-spread choice of test images: the same ones in every run."""
    test = split[split["split"] == "test"].sort_values(["label", "image_id"])
    # One image per class in turn (first of each class, then second, ...), classes spread evenly.
    rank = test.groupby("label").cumcount()
    ordered = test.assign(rank=rank).sort_values(["rank", "label", "image_id"], kind="stable")
    first_round = ordered[ordered["rank"] == 0]
    if len(first_round) > n:
        keep = np.linspace(0, len(first_round) - 1, num=n).round().astype(int)
        return list(first_round["image_id"].iloc[keep])
    return list(ordered["image_id"].iloc[:n])


def load_images(paths, ids: list[str]) -> dict[str, np.ndarray]:
    wanted, found = set(ids), {}
    for path in paths:
        meta = shards.read_shard_meta(path)
        if not wanted.intersection(meta["image_id"]):
            continue
        meta, images = shards.read_shard(path)
        found.update({i: im for i, im in zip(meta["image_id"], images) if i in wanted})
    return found


def sample_grid(ids, hr: dict, lr: dict, sr: dict[str, dict], title: str, out_png) -> None:
    """Rows: sample images; columns: LR (pixel-replicated), each SR method, HR. Each panel has a
    2x zoomed inset of the chromosome's centre, where bands and centromere decide the class."""
    plt = pyplot()
    columns = [("LR", lr)] + [(m, imgs) for m, imgs in sr.items()] + [("HR", hr)]
    fig, axes = plt.subplots(len(ids), len(columns), figsize=(1.6 * len(columns), 1.6 * len(ids)), squeeze=False)
    for r, image_id in enumerate(ids):
        for c, (name, images) in enumerate(columns):
            ax = axes[r][c]
            image = images[image_id]
            peak = data_range(image.dtype)
            ax.imshow(image, cmap="gray", vmin=0, vmax=peak, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            h, w = image.shape
            if min(h, w) < 16:
                continue
            inset = ax.inset_axes([0.62, 0.62, 0.38, 0.38])
            inset.imshow(image[h // 2 - h // 8 : h // 2 + h // 8, w // 2 - w // 8 : w // 2 + w // 8],
                         cmap="gray", vmin=0, vmax=peak, interpolation="nearest")
            inset.set_xticks([])
            inset.set_yticks([])
            for spine in inset.spines.values():
                spine.set_edgecolor("orange")
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(image_id.split("/")[-1], fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, out_png)


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


def draw_whole_image(axes, low: np.ndarray, views: list[tuple[np.ndarray, Registration, str]],
                     enhanced: dict[str, np.ndarray], scale: int, crop: int = 48) -> None:
    """One whole image on a row of ``3 + len(enhanced)`` matplotlib axes: the capture with each
    registered view's footprint drawn, the difference image of the first view after registration,
    and one ``crop``-pixel LR region (outside the views where possible: never photographed at high
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


def whole_figure(ingest_shards, pairs_table, enhanced: dict[str, list[str]], scale: int, out_png) -> None:
    """Rule ``whole_figure``, the figure of one profile: a row per enhanced capture or held-out whole
    image (with ``pairs_table`` None: no registered views to draw)."""
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
        draw_whole_image(row, captures[image_id], views,
                         {m: outputs[image_id][m] for m in enhanced if m in outputs[image_id]}, scale)
        row[0].text(0, -0.25, image_id, transform=row[0].transAxes, fontsize=6)
    if not ids:
        axes[0][0].text(0.5, 0.5, "no test capture to enhance", ha="center")
        for ax in axes[0]:
            ax.set_axis_off()
    fig.tight_layout()
    save_figure(fig, out_png)


def confusion_plot(matrix: pd.DataFrame, title: str, out_png) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    rows = matrix.to_numpy(float)
    shares = rows / np.maximum(rows.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(N_CLASSES), CLASS_NAMES, fontsize=7)
    ax.set_yticks(range(N_CLASSES), CLASS_NAMES, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, label="share of the true class")
    fig.tight_layout()
    save_figure(fig, out_png)


def tsne_plot(features: dict[str, pd.DataFrame], out_png, seed: int = 0) -> None:
    """t-SNE of the penultimate-layer features of the test images, one panel per experiment."""
    from sklearn.manifold import TSNE

    plt = pyplot()
    fig, axes = plt.subplots(1, len(features), figsize=(4.5 * len(features), 4.2), squeeze=False)
    cmap = plt.get_cmap("tab20", N_CLASSES)
    for ax, (name, table) in zip(axes[0], features.items()):
        x = np.stack(table["features"].to_numpy())
        perplexity = max(2.0, min(30.0, (len(x) - 1) / 3))
        points = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(x)
        ax.scatter(points[:, 0], points[:, 1], c=table["label"], cmap=cmap, vmin=-0.5, vmax=N_CLASSES - 0.5, s=8)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    save_figure(fig, out_png)
