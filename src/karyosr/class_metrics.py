"""Classification results: accuracy with bootstrap CI, macro-F1, per-class table (SRAS-net
Table 4 layout), confusion matrices, X/Y accuracy, means over seeds, t-SNE of features."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from karyosr.labels import CLASS_NAMES, N_CLASSES

X_LABEL, Y_LABEL = 22, 23


def bootstrap_ci(correct: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of 0/1 outcomes, resampling test images."""
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), (n_boot, len(correct)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def _class_accuracy(group: pd.DataFrame, label: int) -> float:
    rows = group[group["label"] == label]
    return float((rows["predicted"] == label).mean()) if len(rows) else float("nan")


def run_summary(predictions: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """One row per experiment x seed."""
    rows = []
    for (experiment, seed), group in predictions.groupby(["experiment", "seed"], sort=True):
        correct = (group["label"] == group["predicted"]).to_numpy(float)
        low, high = bootstrap_ci(correct, n_boot, int(seed))
        rows.append({"experiment": experiment, "seed": int(seed), "n_test": len(group), "accuracy": correct.mean(),
                     "accuracy_ci_low": low, "accuracy_ci_high": high,
                     "macro_f1": f1_score(group["label"], group["predicted"], average="macro", zero_division=0),
                     "x_accuracy": _class_accuracy(group, X_LABEL), "y_accuracy": _class_accuracy(group, Y_LABEL)})
    return pd.DataFrame(rows)


def mean_ci(values: pd.Series, level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the t-based CI over seeds (0 with a single seed)."""
    values = values.dropna()
    if len(values) < 2:
        return float(values.mean()) if len(values) else float("nan"), 0.0
    half = stats.t.ppf((1 + level) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


def over_seeds(summary: pd.DataFrame, experiments: list[dict]) -> pd.DataFrame:
    """One row per experiment: metrics as mean and CI half-width over seeds."""
    spec = {e["name"]: e for e in experiments}
    rows = []
    for name, group in summary.groupby("experiment", sort=False):
        row = {"experiment": name, "backbone": spec[name]["backbone"], "input": spec[name]["input"],
               "balance": spec[name]["balance"], "seeds": len(group)}
        for metric in ("accuracy", "macro_f1", "x_accuracy", "y_accuracy"):
            row[f"{metric}_mean"], row[f"{metric}_ci"] = mean_ci(group[metric])
        rows.append(row)
    order = {e["name"]: i for i, e in enumerate(experiments)}
    return pd.DataFrame(rows).sort_values("experiment", key=lambda s: s.map(order)).reset_index(drop=True)


def per_class(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per experiment and class: accuracy (= recall), precision, recall, F1, pooled over seeds."""
    rows = []
    for experiment, group in predictions.groupby("experiment", sort=False):
        labels = list(range(N_CLASSES))
        precision, recall, f1, support = precision_recall_fscore_support(
            group["label"], group["predicted"], labels=labels, zero_division=0)
        for label in labels:
            rows.append({"experiment": experiment, "class": CLASS_NAMES[label], "accuracy": recall[label],
                         "precision": precision[label], "recall": recall[label], "f1": f1[label],
                         "support": int(support[label])})
    return pd.DataFrame(rows)


def confusion(predictions: pd.DataFrame, experiment: str) -> pd.DataFrame:
    group = predictions[predictions["experiment"] == experiment]
    matrix = confusion_matrix(group["label"], group["predicted"], labels=list(range(N_CLASSES)))
    return pd.DataFrame(matrix, index=CLASS_NAMES, columns=CLASS_NAMES)


def confusion_plot(matrix: pd.DataFrame, title: str, out_png) -> None:
    from karyosr.report import pyplot, save_figure

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

    from karyosr.report import pyplot, save_figure

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
