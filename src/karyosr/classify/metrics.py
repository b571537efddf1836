"""Classification results: accuracy, macro-F1 and X/Y accuracy with bootstrap intervals over test
cells, with and without cell decoding, per run and with the seeds pooled, comparisons between
experiments, the per-class table (SRAS-net Table 4), the decoded sex against the true one, and
confusion matrices (drawn, with the t-SNE of features, by karyosr.report.figures).

The test images of one metaphase cell share its staining, blur and condensation, so their outcomes
are not independent: every interval here resamples whole cells (a cluster bootstrap), never single
images, which would understate the uncertainty. Where seeds are pooled the seeds are resampled too,
so an interval holds both the test set's and the training runs' variation. A single test cell gives
no interval.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from karyosr.classify.karyotype import SEXES, UNDETERMINED, X_LABEL, Y_LABEL, require_cells
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


def cell_interval(samples: np.ndarray, n_cells: int, level: float = LEVEL) -> tuple[float, float]:
    """`percentile_interval` of a cell bootstrap's samples, and none (nan, nan) from a single cell:
    every resample is that cell again, and the interval of width 0 this gives would claim a
    certainty its images cannot (they cannot show how much another cell varies)."""
    return percentile_interval(samples, level) if n_cells > 1 else (float("nan"), float("nan"))


def bootstrap_ci(values: np.ndarray, n_boot: int, seed: int, clusters=None,
                 level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-image values. With ``clusters`` (each image's
    cell) whole clusters are resampled and the mean is over the images they hold; without, images.
    A single cluster (or image) has no interval: (nan, nan) (`cell_interval`)."""
    values = np.asarray(values, dtype=np.float64)
    codes = pd.factorize(pd.Series(clusters), sort=True)[0] if clusters is not None else np.arange(len(values))
    sums, counts = np.bincount(codes, weights=values), np.bincount(codes)
    weights = resample_weights(len(sums), n_boot, seed)
    return cell_interval((weights @ sums) / (weights @ counts), len(sums), level)


def confusion_statistics(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 over the fixed 24 classes (an absent class scores 0, as scikit-learn's
    zero_division=0 does), X and Y accuracy and every class's accuracy (``class_accuracy``, NaN
    for a class without test images) of (..., 24, 24) confusion counts (rows: true class)."""
    confusions = np.asarray(confusions, dtype=np.float64)
    hits = np.diagonal(confusions, axis1=-2, axis2=-1)
    true, predicted = confusions.sum(axis=-1), confusions.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        # F1 = 2 tp / (2 tp + fp + fn), and 2 tp + fp + fn = true + predicted counts of the class.
        f1 = np.where(true + predicted > 0, 2 * hits / np.maximum(true + predicted, 1), 0.0)
        return {"accuracy": hits.sum(axis=-1) / true.sum(axis=-1), "macro_f1": f1.mean(axis=-1),
                "x_accuracy": hits[..., X_LABEL] / true[..., X_LABEL],
                "y_accuracy": hits[..., Y_LABEL] / true[..., Y_LABEL],
                "class_accuracy": np.where(true > 0, hits / np.maximum(true, 1), np.nan)}


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
                row[f"{metric}{suffix}_ci_low"], row[f"{metric}{suffix}_ci_high"] = cell_interval(
                    samples[metric], len(cells), level)
            accuracy_samples[suffix] = samples["accuracy"]
        if "_decoded" in accuracy_samples:
            row["decoding_gain"] = row["accuracy_decoded"] - row["accuracy"]
            row["decoding_gain_ci_low"], row["decoding_gain_ci_high"] = cell_interval(
                accuracy_samples["_decoded"] - accuracy_samples[""], len(cells), level)
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class Pooled:
    """One experiment's predictions in one label column, its seeds pooled: the test set's confusion
    counts averaged over seeds (rows: true class; a row sums to the class's test images, since every
    seed predicts the same images), each statistic of `confusion_statistics` averaged over seeds
    (``point``) and its bootstrap samples (``samples``, n_boot first)."""

    confusion: np.ndarray
    point: dict[str, np.ndarray]
    samples: dict[str, np.ndarray]
    n_cells: int

    def interval(self, samples: np.ndarray, level: float = LEVEL) -> tuple:
        """Percentile interval of these (or derived, paired) samples along the resamples, (low, high)
        as floats or, for samples of every class, arrays; NaN from a single test cell (`cell_interval`)."""
        if samples.ndim == 1:
            return cell_interval(samples, self.n_cells, level)
        low, high = zip(*(cell_interval(column, self.n_cells, level) for column in samples.T))
        return np.array(low), np.array(high)


def pooled(predictions: pd.DataFrame, n_boot: int, seed: int = 0) -> dict[tuple[str, str], Pooled]:
    """`Pooled` statistics of every experiment and label column (`LABEL_COLUMNS`), keyed (experiment,
    column). A bootstrap resample draws test cells with replacement, by weights shared by every
    experiment (so comparisons are paired by cell), and the experiment's seeds with replacement (the
    training runs vary too), and averages the drawn seeds' statistics over the drawn cells. An
    experiment's seed draws are the same for its independent and decoded labels, and seeded by its
    name so that adding an experiment to the config leaves the others' draws alone."""
    require_cells(predictions)
    cell_index = pd.Index(sorted(predictions["cell"].unique()))
    weights = resample_weights(len(cell_index), n_boot, seed)
    resamples = np.arange(n_boot)[:, None]
    results = {}
    for name, runs in predictions.groupby("experiment", sort=False):
        n_seeds = runs["seed"].nunique()
        draws = np.random.default_rng([seed, zlib.crc32(name.encode())])
        seed_draws = draws.integers(0, n_seeds, (n_boot, n_seeds))
        for column in label_columns(runs):
            confusions = [cell_confusions(run["label"], run[column], cell_index.get_indexer(run["cell"]),
                                          len(cell_index)) for _, run in runs.groupby("seed", sort=True)]
            points = [confusion_statistics(c.sum(axis=0)) for c in confusions]
            drawn = [confusion_statistics(np.tensordot(weights, c, axes=1)) for c in confusions]
            results[name, column] = Pooled(
                confusion=np.mean([c.sum(axis=0) for c in confusions], axis=0),
                point={k: np.mean([p[k] for p in points], axis=0) for k in points[0]},
                # (n_boot, n_seeds, ...) indexed by the drawn seeds, then averaged over them
                samples={k: np.stack([d[k] for d in drawn], axis=1)[resamples, seed_draws].mean(axis=1)
                         for k in drawn[0]},
                n_cells=len(cell_index))
    return results


SEX_CHROMOSOMES = {"x": X_LABEL, "y": Y_LABEL}


def interval_text(n_cells: int, n_seeds: int, level: float = LEVEL) -> str:
    """What a `pooled` interval resamples, for the tables' ``interval`` column."""
    if n_cells < 2:
        return "no interval: a single test cell"
    return f"{level:.0%} bootstrap over {n_cells} test cells and {n_seeds} seed{'s' if n_seeds > 1 else ''}"


def over_seeds(predictions: pd.DataFrame, experiments: list[dict], n_boot: int, seed: int = 0,
               level: float = LEVEL) -> pd.DataFrame:
    """One row per experiment, in config order: each metric's mean over seeds (``<metric>_mean``)
    with its bootstrap interval over test cells and seeds (`pooled`; one seed resamples the cells
    alone), for the independent and (where present) the decoded labels, and the gain of decoding,
    paired by cell and seed. For X and Y accuracy also the class's test images (``x_images``) and
    how many of them were classified right, averaged over seeds (``x_accuracy_hits``)."""
    results = pooled(predictions, n_boot, seed)
    rows = []
    for experiment in experiments:
        name = experiment["name"]
        if (name, "predicted") not in results:
            continue
        runs = predictions[predictions["experiment"] == name]
        independent = results[name, "predicted"]
        row = {"experiment": name, "backbone": experiment["backbone"], "input": experiment["input"],
               "balance": experiment["balance"], "seeds": runs["seed"].nunique(),
               "n_test": runs["image_id"].nunique(), "n_cells": runs["cell"].nunique(),
               "interval": interval_text(independent.n_cells, runs["seed"].nunique(), level)}
        row |= {f"{prefix}_images": int(round(independent.confusion[label].sum()))
                for prefix, label in SEX_CHROMOSOMES.items()}
        for column, suffix in label_columns(runs).items():
            result = results[name, column]
            for metric in METRICS:
                row[f"{metric}{suffix}_mean"] = float(result.point[metric])
                row[f"{metric}{suffix}_ci_low"], row[f"{metric}{suffix}_ci_high"] = result.interval(
                    result.samples[metric], level)
            row |= {f"{prefix}_accuracy{suffix}_hits": float(result.confusion[label, label])
                    for prefix, label in SEX_CHROMOSOMES.items()}
        if (name, "predicted_decoded") in results:
            decoded = results[name, "predicted_decoded"]
            row["decoding_gain_mean"] = float(decoded.point["accuracy"] - independent.point["accuracy"])
            row["decoding_gain_ci_low"], row["decoding_gain_ci_high"] = independent.interval(
                decoded.samples["accuracy"] - independent.samples["accuracy"], level)
        rows.append(row)
    return pd.DataFrame(rows)


def per_class(predictions: pd.DataFrame, n_boot: int, seed: int = 0, level: float = LEVEL) -> pd.DataFrame:
    """Per experiment and class: support (the class's test images, counted once), accuracy (=
    recall) with its bootstrap interval over test cells and seeds (`pooled`) and ``hits`` (test
    images classified right, averaged over seeds), the same for the decoded labels where present,
    and precision and F1 of the seeds pooled (every seed predicts the same test images)."""
    results = pooled(predictions, n_boot, seed)
    rows = []
    for experiment, runs in predictions.groupby("experiment", sort=False):
        independent = results[experiment, "predicted"]
        confusion = independent.confusion
        hits, true, predicted = np.diagonal(confusion), confusion.sum(axis=1), confusion.sum(axis=0)
        scores = {"support": np.round(true).astype(int)}
        for column, suffix in label_columns(runs).items():
            result = results[experiment, column]
            low, high = result.interval(result.samples["class_accuracy"], level)
            scores |= {f"hits{suffix}": np.diagonal(result.confusion),
                       f"accuracy{suffix}": result.point["class_accuracy"],
                       f"accuracy{suffix}_ci_low": low, f"accuracy{suffix}_ci_high": high}
        with np.errstate(invalid="ignore", divide="ignore"):
            scores["precision"] = np.where(predicted > 0, hits / np.maximum(predicted, 1), 0.0)
            scores["f1"] = np.where(true + predicted > 0, 2 * hits / np.maximum(true + predicted, 1), 0.0)
        for label in range(N_CLASSES):
            rows.append({"experiment": experiment, "class": CLASS_NAMES[label],
                         **{name: values[label].item() for name, values in scores.items()}})
    return pd.DataFrame(rows)


def sex_call_summary(cells: pd.DataFrame) -> pd.DataFrame:
    """Per experiment, the decoded sex (``sex``) of the test cells whose true labels show theirs
    (``true_sex`` XX or XY; a cell whose images hold no Y and fewer than two X is left out), the
    seeds pooled: each seed calls each cell once, so ``calls`` = ``cells_known`` x seeds, and every
    call is ``correct``, ``wrong`` (the other sex) or ``undetermined`` (XX or XY)."""
    if "true_sex" not in cells:
        raise ValueError("the cells table has no 'true_sex' column (written before decoding recorded each cell's "
                         "true sex): rerun rule classification_summary (snakemake --forcerun classification_summary)")
    rows = []
    for experiment, runs in cells.groupby("experiment", sort=False):
        known = runs[runs["true_sex"].isin(SEXES)]
        correct = int((known["sex"] == known["true_sex"]).sum())
        undetermined = int((known["sex"] == UNDETERMINED).sum())
        rows.append({"experiment": experiment, "seeds": runs["seed"].nunique(), "cells_known": known["cell"].nunique(),
                     "calls": len(known), "correct": correct, "wrong": len(known) - correct - undetermined,
                     "undetermined": undetermined})
    return pd.DataFrame(rows, columns=["experiment", "seeds", "cells_known", "calls", "correct", "wrong",
                                       "undetermined"])


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
    * ``balance``: SMOTE vs another balancing of the same input, on X and Y accuracy;
    * ``ensemble``: an ensemble of each seed's runs (`karyosr.classify.ensemble`) vs each member.
    """
    pairs = [("ensemble", e["name"], member, ("accuracy",)) for e in experiments
             if e.get("members") and not e["over_seeds"] for member in e["members"]]
    experiments = [e for e in experiments if not e.get("members")]
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


def comparisons(predictions: pd.DataFrame, experiments: list[dict], n_boot: int, seed: int = 0,
                level: float = LEVEL) -> pd.DataFrame:
    """Differences between experiments that differ in one thing only (`comparison_pairs`), and of
    cell decoding within each experiment, with bootstrap intervals over test cells and seeds
    (`pooled`: the same cells for both sides).

    ``share_of_gap``: for an SR route, the share of its profile's LR-to-HR accuracy gap it closes,
    its interval from the same resamples (the route's difference over the gap's in each). Only
    where both are measured: NaN when the route's interval includes 0 or the gap's does not lie
    above 0 (a share of a difference that may be none, or of a gap that may not exist, says
    nothing)."""
    results = pooled(predictions, n_boot, seed)
    names = [e["name"] for e in experiments if (e["name"], "predicted") in results]
    pairs = [(kind, a, b, metrics) for kind, a, b, metrics in comparison_pairs(experiments)
             if a in names and b in names]
    rows, differences = [], {}

    def add(kind, experiment, baseline, metric, treated, reference):
        samples = treated.samples[metric] - reference.samples[metric]
        low, high = treated.interval(samples, level)
        differences[kind, experiment, baseline, metric] = samples
        rows.append({"comparison": kind, "experiment": experiment, "baseline": baseline, "metric": metric,
                     "experiment_value": float(treated.point[metric]), "baseline_value": float(reference.point[metric]),
                     "difference": float(treated.point[metric] - reference.point[metric]),
                     "ci_low": low, "ci_high": high})

    for kind, a, b, metrics in pairs:
        for metric in metrics:
            add(kind, a, b, metric, results[a, "predicted"], results[b, "predicted"])
    for name in names:
        if (name, "predicted_decoded") in results:
            add("cell_decoding", name, name, "accuracy", results[name, "predicted_decoded"], results[name, "predicted"])
    table = pd.DataFrame(rows, columns=["comparison", "experiment", "baseline", "metric", "experiment_value",
                                        "baseline_value", "difference", "ci_low", "ci_high"])
    gaps = table[table["comparison"] == "lr_to_hr_gap"].set_index("baseline")
    share = np.full((len(table), 3), np.nan)
    for i, route in table[table["comparison"] == "sr_route"].iterrows():
        if route["baseline"] not in gaps.index:
            continue
        gap = gaps.loc[route["baseline"]]
        if gap["ci_low"] > 0 and (route["ci_low"] > 0 or route["ci_high"] < 0):
            with np.errstate(invalid="ignore", divide="ignore"):
                ratios = (differences["sr_route", route["experiment"], route["baseline"], "accuracy"]
                          / differences["lr_to_hr_gap", gap["experiment"], route["baseline"], "accuracy"])
            share[i] = route["difference"] / gap["difference"], *results[route["experiment"], "predicted"].interval(
                ratios, level)
    table["share_of_gap"], table["share_of_gap_ci_low"], table["share_of_gap_ci_high"] = share.T
    table["interval"] = interval_text(len(predictions["cell"].unique()), predictions["seed"].nunique(), level)
    return table


def confusion(predictions: pd.DataFrame, experiment: str) -> pd.DataFrame:
    group = predictions[predictions["experiment"] == experiment]
    matrix = confusion_matrix(group["label"], group["predicted"], labels=list(range(N_CLASSES)))
    return pd.DataFrame(matrix, index=CLASS_NAMES, columns=CLASS_NAMES)
