"""Classification results: accuracy, macro-F1 and X/Y accuracy with bootstrap intervals over test
cells, with and without cell decoding, summaries over seeds, comparisons between experiments, the
per-class table (SRAS-net Table 4) and confusion matrices (drawn, with the t-SNE of features, by
karyosr.report.figures).

The test images of one metaphase cell share its staining, blur and condensation, so their outcomes
are not independent: every interval here resamples whole cells (a cluster bootstrap), never single
images, which would understate the uncertainty.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import confusion_matrix

from karyosr.classify.karyotype import X_LABEL, Y_LABEL, require_cells
from karyosr.labels import CLASS_NAMES, N_CLASSES

METRICS = ("accuracy", "macro_f1", "x_accuracy", "y_accuracy")
# Prediction columns scored, and the suffix of their metric columns.
LABEL_COLUMNS = {"predicted": "", "predicted_decoded": "_decoded"}
LEVEL = 0.95


def resample_weights(n_units: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each of n_units (cells) is drawn in each of n_boot resamples with replacement,
    (n_boot, n_units): a statistic of per-cell sums is then one matrix product per resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_boot)


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` share of bootstrap samples; resamples where the statistic is undefined
    (no X image drawn, say) are left out."""
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    return float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))


def bootstrap_ci(values: np.ndarray, n_boot: int, seed: int, clusters=None, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-image values. With ``clusters`` (each image's
    cell) whole clusters are resampled and the mean is over the images they hold; without, images."""
    values = np.asarray(values, dtype=np.float64)
    codes = pd.factorize(pd.Series(clusters), sort=True)[0] if clusters is not None else np.arange(len(values))
    sums, counts = np.bincount(codes, weights=values), np.bincount(codes)
    weights = resample_weights(len(sums), n_boot, seed)
    return percentile_interval((weights @ sums) / (weights @ counts), level)


def confusion_statistics(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 over the fixed 24 classes (an absent class scores 0, as scikit-learn's
    zero_division=0 does), X and Y accuracy of (..., 24, 24) confusion counts (rows: true class)."""
    confusions = np.asarray(confusions, dtype=np.float64)
    hits = np.diagonal(confusions, axis1=-2, axis2=-1)
    true, predicted = confusions.sum(axis=-1), confusions.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        # F1 = 2 tp / (2 tp + fp + fn), and 2 tp + fp + fn = true + predicted counts of the class.
        f1 = np.where(true + predicted > 0, 2 * hits / np.maximum(true + predicted, 1), 0.0)
        return {"accuracy": hits.sum(axis=-1) / true.sum(axis=-1), "macro_f1": f1.mean(axis=-1),
                "x_accuracy": hits[..., X_LABEL] / true[..., X_LABEL],
                "y_accuracy": hits[..., Y_LABEL] / true[..., Y_LABEL]}


def cell_confusions(labels, predicted, cell_codes, n_cells: int) -> np.ndarray:
    """(n_cells, 24, 24) confusion counts of each cell."""
    flat = (np.asarray(cell_codes) * N_CLASSES + np.asarray(labels)) * N_CLASSES + np.asarray(predicted)
    return np.bincount(flat, minlength=n_cells * N_CLASSES**2).reshape(n_cells, N_CLASSES, N_CLASSES)


def label_columns(predictions: pd.DataFrame) -> dict[str, str]:
    return {column: suffix for column, suffix in LABEL_COLUMNS.items() if column in predictions}


def run_summary(predictions: pd.DataFrame, n_boot: int = 1000, level: float = LEVEL) -> pd.DataFrame:
    """One row per experiment x seed: each metric with its cell-bootstrap interval, for the
    independent and (where present) the decoded labels, and the gain of decoding, paired by cell."""
    require_cells(predictions)
    rows = []
    for (experiment, seed), group in predictions.groupby(["experiment", "seed"], sort=True):
        codes, cells = pd.factorize(group["cell"], sort=True)
        weights = resample_weights(len(cells), n_boot, int(seed))
        row = {"experiment": experiment, "seed": int(seed), "n_test": len(group), "n_cells": len(cells)}
        accuracy_samples = {}
        for column, suffix in label_columns(group).items():
            confusions = cell_confusions(group["label"], group[column], codes, len(cells))
            point = confusion_statistics(confusions.sum(axis=0))
            samples = confusion_statistics(np.tensordot(weights, confusions, axes=1))
            for metric in METRICS:
                row[metric + suffix] = float(point[metric])
                row[f"{metric}{suffix}_ci_low"], row[f"{metric}{suffix}_ci_high"] = percentile_interval(
                    samples[metric], level)
            accuracy_samples[suffix] = samples["accuracy"]
        if "_decoded" in accuracy_samples:
            row["decoding_gain"] = row["accuracy_decoded"] - row["accuracy"]
            row["decoding_gain_ci_low"], row["decoding_gain_ci_high"] = percentile_interval(
                accuracy_samples["_decoded"] - accuracy_samples[""], level)
        rows.append(row)
    return pd.DataFrame(rows)


def summary_metrics(runs: pd.DataFrame) -> list[str]:
    """The metric columns of a run summary, in table order."""
    names = [m + suffix for suffix in LABEL_COLUMNS.values() for m in METRICS] + ["decoding_gain"]
    return [name for name in names if name in runs]


def t_interval(values: pd.Series, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and t-based interval over seeds (at least two values)."""
    half = stats.t.ppf((1 + level) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(values.mean() - half), float(values.mean() + half)


def over_seeds(runs: pd.DataFrame, experiments: list[dict], level: float = LEVEL) -> pd.DataFrame:
    """One row per experiment: each metric's mean over seeds and its interval: the t-interval over
    seeds with two or more, the run's own cell-bootstrap interval with one (a t-interval of one
    value would read ± 0). ``interval`` says which. t-intervals are cut to the metric's range
    ([0, 1]; [-1, 1] for the decoding gain)."""
    spec = {e["name"]: e for e in experiments}
    rows = []
    for name, group in runs.groupby("experiment", sort=False):
        row = {"experiment": name, "backbone": spec[name]["backbone"], "input": spec[name]["input"],
               "balance": spec[name]["balance"], "seeds": len(group),
               "interval": (f"{level:.0%} t-interval over {len(group)} seeds" if len(group) > 1
                            else f"{level:.0%} cell bootstrap of the single run")}
        for metric in summary_metrics(runs):
            values = group[metric].dropna()
            if len(values) > 1:
                mean, low, high = t_interval(values, level)
                # few seeds give wide t-intervals; the metric cannot leave its range, so neither can they
                bottom = -1.0 if metric == "decoding_gain" else 0.0
                low, high = max(low, bottom), min(high, 1.0)
            elif len(values) == 1:
                single = group.loc[values.index[0]]
                mean, low, high = values.iloc[0], single[f"{metric}_ci_low"], single[f"{metric}_ci_high"]
            else:
                mean = low = high = float("nan")
            row[f"{metric}_mean"], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = mean, low, high
        rows.append(row)
    order = {e["name"]: i for i, e in enumerate(experiments)}
    return pd.DataFrame(rows).sort_values("experiment", key=lambda s: s.map(order)).reset_index(drop=True)


def per_class(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per experiment and class: accuracy (= recall), precision, F1, the seeds pooled (every seed
    predicts the same test images), and support = the class's test images, counted once."""
    rows = []
    for experiment, group in predictions.groupby("experiment", sort=False):
        labels = group.drop_duplicates("image_id")["label"]
        support = np.bincount(labels, minlength=N_CLASSES)
        scores = {}
        for column, suffix in label_columns(group).items():
            confusions = cell_confusions(group["label"], group[column], np.zeros(len(group), int), 1)[0]
            hits, true, predicted = np.diagonal(confusions), confusions.sum(axis=1), confusions.sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                scores["accuracy" + suffix] = np.where(true > 0, hits / np.maximum(true, 1), np.nan)
            if not suffix:
                scores["precision"] = np.where(predicted > 0, hits / np.maximum(predicted, 1), 0.0)
                scores["f1"] = np.where(true + predicted > 0, 2 * hits / np.maximum(true + predicted, 1), 0.0)
        for label in range(N_CLASSES):
            rows.append({"experiment": experiment, "class": CLASS_NAMES[label],
                         **{name: float(values[label]) for name, values in scores.items()},
                         "support": int(support[label])})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- comparisons


def _settings_key(experiment: dict, varied: set[str]) -> str:
    """What an experiment is apart from the ``varied`` keys: experiments with the same key differ
    only in those."""
    return json.dumps({k: v for k, v in experiment.items() if k not in varied | {"name"}}, sort_keys=True)


def comparison_pairs(experiments: list[dict]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(comparison, experiment, baseline, metrics) for experiments that differ in one thing only:

    * ``lr_to_hr_gap``: HR input vs bicubic LR input of a profile;
    * ``sr_route``: an sr: or super: input vs the LR input of the same profile (sr_options apply to
      super: inputs only, so they do not count as a difference);
    * ``balance``: SMOTE vs another balancing of the same input, on X and Y accuracy.
    """
    pairs = []
    by_input: dict[str, dict[str, str]] = {}
    for e in experiments:
        by_input.setdefault(_settings_key(e, {"input", "sr_options"}), {}).setdefault(e["input"], e["name"])
    for inputs in by_input.values():
        for key, name in inputs.items():
            kind, profile = key.split(":")[0], key.split(":")[-1]
            lr = inputs.get(f"lr:{profile}")
            if kind in ("sr", "super") and lr:
                pairs.append(("sr_route", name, lr, ("accuracy",)))
        for key, lr in inputs.items():
            if key.startswith("lr:") and "hr" in inputs:
                pairs.append(("lr_to_hr_gap", inputs["hr"], lr, ("accuracy",)))
    by_balance: dict[str, list[dict]] = {}
    for e in experiments:
        by_balance.setdefault(_settings_key(e, {"balance"}), []).append(e)
    for group in by_balance.values():
        for smote in (e for e in group if e["balance"] == "smote"):
            pairs += [("balance", smote["name"], other["name"], ("x_accuracy", "y_accuracy"))
                      for other in group if other["balance"] != "smote"]
    return pairs


def _pooled_samples(runs: pd.DataFrame, column: str, cell_index: pd.Index, weights: np.ndarray,
                    seed_draws: np.ndarray) -> tuple[dict, dict]:
    """Each metric averaged over an experiment's seeds, and its bootstrap samples: cells resampled
    by ``weights`` (shared by every experiment, so comparisons are paired by cell) and seeds by
    ``seed_draws`` (n_boot, n_seeds) indices (the training runs vary too)."""
    points, samples = [], []
    for _, run in runs.groupby("seed", sort=True):
        confusions = cell_confusions(run["label"], run[column], cell_index.get_indexer(run["cell"]), len(cell_index))
        points.append(confusion_statistics(confusions.sum(axis=0)))
        samples.append(confusion_statistics(np.tensordot(weights, confusions, axes=1)))
    point = {m: float(np.mean([p[m] for p in points])) for m in METRICS}
    drawn = {m: np.stack([s[m] for s in samples], axis=1) for m in METRICS}  # (n_boot, n_seeds)
    rows = np.arange(len(weights))[:, None]
    return point, {m: drawn[m][rows, seed_draws].mean(axis=1) for m in METRICS}


def comparisons(predictions: pd.DataFrame, experiments: list[dict], n_boot: int, seed: int = 0,
                level: float = LEVEL) -> pd.DataFrame:
    """Differences between experiments that differ in one thing only (`comparison_pairs`), and of
    cell decoding within each experiment, with bootstrap intervals over test cells and seeds.
    ``share_of_gap``: for an SR route, the share of its profile's LR-to-HR accuracy gap it closes."""
    require_cells(predictions)
    cell_index = pd.Index(sorted(predictions["cell"].unique()))
    weights = resample_weights(len(cell_index), n_boot, seed)
    names = [e["name"] for e in experiments if e["name"] in set(predictions["experiment"])]
    results = {}
    for name in names:
        runs = predictions[predictions["experiment"] == name]
        n_seeds = runs["seed"].nunique()
        # One seed draw per experiment, the same for its independent and decoded labels, and seeded
        # by its name so that adding an experiment to the config leaves the others' draws alone.
        seed_draws = np.random.default_rng([seed, zlib.crc32(name.encode())]).integers(0, n_seeds, (n_boot, n_seeds))
        for column in label_columns(runs):
            results[name, column] = _pooled_samples(runs, column, cell_index, weights, seed_draws)
    pairs = [(kind, a, b, metrics) for kind, a, b, metrics in comparison_pairs(experiments)
             if a in names and b in names]
    rows = []

    def add(kind, experiment, baseline, metric, treated, reference):
        (treated_point, treated_samples), (reference_point, reference_samples) = treated, reference
        low, high = percentile_interval(treated_samples[metric] - reference_samples[metric], level)
        rows.append({"comparison": kind, "experiment": experiment, "baseline": baseline, "metric": metric,
                     "experiment_value": treated_point[metric], "baseline_value": reference_point[metric],
                     "difference": treated_point[metric] - reference_point[metric], "ci_low": low, "ci_high": high})

    for kind, a, b, metrics in pairs:
        for metric in metrics:
            add(kind, a, b, metric, results[a, "predicted"], results[b, "predicted"])
    for name in names:
        if (name, "predicted_decoded") in results:
            add("cell_decoding", name, name, "accuracy", results[name, "predicted_decoded"], results[name, "predicted"])
    table = pd.DataFrame(rows, columns=["comparison", "experiment", "baseline", "metric", "experiment_value",
                                        "baseline_value", "difference", "ci_low", "ci_high"])
    gaps = table[table["comparison"] == "lr_to_hr_gap"].set_index("baseline")["difference"]
    routes = table["comparison"] == "sr_route"
    with np.errstate(invalid="ignore", divide="ignore"):
        table["share_of_gap"] = np.where(routes, table["difference"] / table["baseline"].map(gaps), np.nan)
    table["interval"] = f"{level:.0%} bootstrap over test cells and seeds"
    return table


def confusion(predictions: pd.DataFrame, experiment: str) -> pd.DataFrame:
    group = predictions[predictions["experiment"] == experiment]
    matrix = confusion_matrix(group["label"], group["predicted"], labels=list(range(N_CLASSES)))
    return pd.DataFrame(matrix, index=CLASS_NAMES, columns=CLASS_NAMES)
