"""The report's figures: quality box plots, training curves, sample grids, confusion matrices and
t-SNE of classifier features, written as PNG (and SVG) with matplotlib's Agg backend."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from karyosr.io import atomic, shards
from karyosr.io.images import data_range
from karyosr.labels import CLASS_NAMES, N_CLASSES


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
