"""Classification statistics: cell bootstrap, run and seed summaries, per-class table, comparisons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from karyosr.classify import metrics as class_metrics


def _predictions(seed=0, experiment="e", accuracy=0.7, n_cells=8):
    """Every class 5 times over ``n_cells`` cells, predicted right with probability ``accuracy``."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(24), 5)
    predicted = np.where(rng.random(len(labels)) < accuracy, labels, rng.integers(0, 24, len(labels)))
    return pd.DataFrame({"image_id": [f"i{k:03d}" for k in range(len(labels))],
                         "cell": [f"c{k % n_cells}" for k in range(len(labels))], "label": labels,
                         "predicted": predicted, "experiment": experiment, "seed": seed})


# --------------------------------------------------------------------------- cluster bootstrap


def test_cell_bootstrap_is_wider_than_the_image_bootstrap_for_correlated_cells():
    # 20 cells of 10 images each; a cell is all right or all wrong
    cells = np.repeat(np.arange(20), 10)
    correct = (cells % 2 == 0).astype(float)
    image_low, image_high = class_metrics.bootstrap_ci(correct, 2000, seed=0)
    cell_low, cell_high = class_metrics.bootstrap_ci(correct, 2000, seed=0, clusters=cells)
    assert image_low < 0.5 < image_high and cell_low < 0.5 < cell_high
    assert (cell_high - cell_low) > 2 * (image_high - image_low)  # ~ sqrt(10) wider


def test_bootstrap_is_deterministic_with_a_seed_and_degenerate_when_all_correct():
    values, cells = np.random.default_rng(0).random(40), np.arange(40) // 4
    assert class_metrics.bootstrap_ci(values, 500, 3, cells) == class_metrics.bootstrap_ci(values, 500, 3, cells)
    assert class_metrics.bootstrap_ci(values, 500, 3, cells) != class_metrics.bootstrap_ci(values, 500, 4, cells)
    assert class_metrics.bootstrap_ci(np.ones(40), 500, 0, cells) == (1.0, 1.0)


def test_bootstrap_of_a_single_cluster_gives_no_interval():
    # every resample of one cell is that cell: an interval of width 0 would claim certainty
    values = np.random.default_rng(0).random(10)
    assert np.isnan(class_metrics.bootstrap_ci(values, 200, 0, clusters=["c"] * 10)).all()
    assert np.isnan(class_metrics.bootstrap_ci(values[:1], 200, 0)).all()


def test_confusion_statistics_match_scikit_learn_over_24_classes():
    predictions = _predictions()
    predictions = predictions[~predictions["label"].isin([5, 23])]  # classes absent from the test set
    confusion = class_metrics.cell_confusions(predictions["label"], predictions["predicted"],
                                              np.zeros(len(predictions), int), 1)[0]
    statistics = class_metrics.confusion_statistics(confusion)
    assert statistics["accuracy"] == pytest.approx((predictions["label"] == predictions["predicted"]).mean())
    assert statistics["macro_f1"] == pytest.approx(f1_score(predictions["label"], predictions["predicted"],
                                                            labels=range(24), average="macro", zero_division=0))
    assert np.isnan(statistics["y_accuracy"])


# --------------------------------------------------------------------------- runs and seeds


def test_run_summary_cell_intervals_bracket_each_metric_and_decoding_is_paired():
    predictions = _predictions()
    predictions["predicted_decoded"] = predictions["label"]  # decoding fixes everything
    row = class_metrics.run_summary(predictions, n_boot=500).iloc[0]
    accuracy = (predictions.label == predictions.predicted).mean()
    assert row["n_test"] == 120 and row["n_cells"] == 8
    assert row["accuracy"] == pytest.approx(accuracy)
    for metric in ("accuracy", "macro_f1", "x_accuracy"):
        assert row[f"{metric}_ci_low"] <= row[metric] <= row[f"{metric}_ci_high"]
    assert row["macro_f1"] == pytest.approx(f1_score(predictions.label, predictions.predicted, average="macro"))
    x = predictions[predictions.label == 22]
    assert row["x_accuracy"] == pytest.approx((x.predicted == 22).mean())
    assert row["accuracy_decoded"] == 1.0 and (row["accuracy_decoded_ci_low"], row["accuracy_decoded_ci_high"]) == (1, 1)
    assert row["decoding_gain"] == pytest.approx(1 - accuracy)
    assert 0 < row["decoding_gain_ci_low"] <= row["decoding_gain"] <= row["decoding_gain_ci_high"]


def test_run_summary_needs_cells():
    with pytest.raises(ValueError, match="rerun rule predict"):
        class_metrics.run_summary(_predictions().drop(columns="cell"), n_boot=100)


EXPERIMENT = {"name": "e", "backbone": "dcnn", "input": "hr", "balance": "smote"}


def test_over_seeds_resamples_test_cells_and_seeds():
    # three seeds that agree exactly: a t-interval over seeds would read [x, x]; the test cells still vary
    predictions = pd.concat([_predictions(seed=0).assign(seed=seed) for seed in (0, 1, 2)], ignore_index=True)
    predictions["predicted_decoded"] = predictions["label"]
    row = class_metrics.over_seeds(predictions, [EXPERIMENT], n_boot=500).iloc[0]
    accuracy = (predictions.label == predictions.predicted).mean()
    assert row["accuracy_mean"] == pytest.approx(accuracy) and row["seeds"] == 3
    assert (row["n_test"], row["n_cells"]) == (120, 8)
    for metric in ("accuracy", "macro_f1", "x_accuracy", "y_accuracy"):
        assert row[f"{metric}_ci_low"] < row[f"{metric}_mean"] < row[f"{metric}_ci_high"] or row[f"{metric}_mean"] == 1
        assert 0 <= row[f"{metric}_ci_low"] and row[f"{metric}_ci_high"] <= 1
    y = predictions[(predictions.label == 23) & (predictions.seed == 0)]
    assert row["y_images"] == 5 and row["y_accuracy_hits"] == (y.predicted == 23).sum()
    assert row["y_accuracy_mean"] == pytest.approx(row["y_accuracy_hits"] / 5)
    assert row["decoding_gain_mean"] == pytest.approx(1 - accuracy) and row["decoding_gain_ci_low"] > 0
    assert row["interval"] == "95% bootstrap over 8 test cells and 3 seeds"
    assert class_metrics.over_seeds(predictions, [EXPERIMENT], n_boot=500).equals(
        class_metrics.over_seeds(predictions, [EXPERIMENT], n_boot=500))  # seeded


def test_over_seeds_with_one_seed_and_hits_averaged_over_seeds():
    one = class_metrics.over_seeds(_predictions(), [EXPERIMENT], n_boot=300).iloc[0]
    assert one["accuracy_ci_low"] < one["accuracy_mean"] < one["accuracy_ci_high"]  # not ± 0
    assert one["interval"] == "95% bootstrap over 8 test cells and 1 seed"
    two = pd.concat([_predictions(seed=0), _predictions(seed=1)], ignore_index=True)
    row = class_metrics.over_seeds(two, [EXPERIMENT, {**EXPERIMENT, "name": "absent"}], n_boot=300)
    assert list(row["experiment"]) == ["e"]  # an experiment without predictions is left out
    x = two[two.label == 22]
    assert row.loc[0, "x_accuracy_hits"] == pytest.approx((x.predicted == 22).sum() / 2)
    assert row.loc[0, "x_accuracy_mean"] == pytest.approx((x.predicted == 22).mean())


def test_a_single_test_cell_gives_no_interval():
    row = class_metrics.over_seeds(_predictions(n_cells=1), [EXPERIMENT], n_boot=200).iloc[0]
    assert not np.isnan(row["accuracy_mean"]) and np.isnan([row["accuracy_ci_low"], row["accuracy_ci_high"]]).all()
    assert row["interval"] == "no interval: a single test cell"
    table = class_metrics.per_class(_predictions(n_cells=1), n_boot=200)
    assert table["accuracy_ci_low"].isna().all()


def test_per_class_matches_scikit_learn_and_counts_support_once():
    predictions = pd.concat([_predictions(seed=0), _predictions(seed=1)], ignore_index=True)
    predictions["predicted_decoded"] = predictions["label"]
    table = class_metrics.per_class(predictions, n_boot=300).set_index("class")
    labels = list(range(24))
    np.testing.assert_allclose(table["precision"], precision_score(predictions.label, predictions.predicted,
                                                                   labels=labels, average=None, zero_division=0))
    np.testing.assert_allclose(table["accuracy"], recall_score(predictions.label, predictions.predicted,
                                                               labels=labels, average=None, zero_division=0))
    np.testing.assert_allclose(table["f1"], f1_score(predictions.label, predictions.predicted, labels=labels,
                                                     average=None, zero_division=0))
    assert table.loc["X", "support"] == 5  # 5 test images, predicted by 2 seeds
    np.testing.assert_allclose(table["hits"], table["accuracy"] * table["support"])  # averaged over the seeds
    assert (table["accuracy_ci_low"] <= table["accuracy"]).all()
    assert (table["accuracy"] <= table["accuracy_ci_high"]).all()
    assert (table["accuracy_ci_high"] - table["accuracy_ci_low"] > 0).any()
    assert (table["accuracy_decoded"] == 1).all() and (table["hits_decoded"] == 5).all()
    absent = class_metrics.per_class(predictions[predictions.label != 23], n_boot=300).set_index("class")
    assert np.isnan(absent.loc["Y", ["accuracy", "accuracy_ci_low", "accuracy_ci_high"]].astype(float)).all()
    assert absent.loc["Y", "support"] == 0


def _cells(experiment, seed, calls):
    """A cells table of (true sex, decoded sex) pairs, as karyotype.decode writes it."""
    return pd.DataFrame({"experiment": experiment, "seed": seed, "cell": [f"c{k}" for k in range(len(calls))],
                         "true_sex": [t for t, _ in calls], "sex": [s for _, s in calls]})


def test_sex_call_summary_counts_calls_of_cells_of_known_sex():
    calls = [("XX", "XX"), ("XY", "XX"), ("XY", "XX or XY"), ("", "XY")]  # the last cell's sex is unknown
    cells = pd.concat([_cells("a", 0, calls), _cells("a", 1, calls[:1] + [("XY", "XY")] + calls[2:]),
                       _cells("b", 0, [("", "XX")])], ignore_index=True)
    table = class_metrics.sex_call_summary(cells).set_index("experiment")
    assert table.loc["a"].to_dict() == {"seeds": 2, "cells_known": 3, "calls": 6, "correct": 3, "wrong": 1,
                                        "undetermined": 2}
    assert table.loc["b"].to_dict() == {"seeds": 1, "cells_known": 0, "calls": 0, "correct": 0, "wrong": 0,
                                        "undetermined": 0}
    assert class_metrics.sex_call_summary(cells.iloc[:0]).empty
    with pytest.raises(ValueError, match="rerun rule classification_summary"):
        class_metrics.sex_call_summary(cells.drop(columns="true_sex"))


# --------------------------------------------------------------------------- comparisons


def _experiment(name, input_key, balance="smote", **settings):
    return {"name": name, "input": input_key, "backbone": "dcnn", "balance": balance, "sr_options": {},
            "epochs": 5, **settings}


def test_comparison_pairs_differ_in_one_thing_only():
    experiments = [
        _experiment("hr", "hr"), _experiment("lr", "lr:x4"), _experiment("sr", "sr:srresnet:x4"),
        _experiment("super", "super:srcnn:x4", sr_options={"channels": [8]}),
        _experiment("lr_long", "lr:x4", epochs=50),  # differs from hr in epochs too: no gap pair
        _experiment("hr_none", "hr", balance="none"),
    ]
    pairs = {(kind, a, b) for kind, a, b, _ in class_metrics.comparison_pairs(experiments)}
    assert pairs == {("lr_to_hr_gap", "hr", "lr"), ("sr_route", "sr", "lr"), ("sr_route", "super", "lr"),
                     ("balance", "hr", "hr_none")}


def test_comparisons_gap_route_share_and_decoding():
    experiments = [_experiment("hr", "hr"), _experiment("lr", "lr:x4"), _experiment("sr", "sr:m:x4")]
    frames = []
    for name, accuracy in (("hr", 0.9), ("lr", 0.3), ("sr", 0.6)):
        for seed in (0, 1):
            frame = _predictions(seed=seed, experiment=name, accuracy=accuracy, n_cells=12)
            frame["predicted_decoded"] = np.where(frame.index % 2 == 0, frame["label"], frame["predicted"])
            frames.append(frame)
    predictions = pd.concat(frames, ignore_index=True)
    table = class_metrics.comparisons(predictions, experiments, n_boot=400)
    assert table.equals(class_metrics.comparisons(predictions, experiments, n_boot=400))  # seeded
    gap = table[table["comparison"] == "lr_to_hr_gap"].iloc[0]
    route = table[table["comparison"] == "sr_route"].iloc[0]
    assert (gap["experiment"], gap["baseline"]) == ("hr", "lr") and gap["ci_low"] > 0.3
    assert gap["ci_low"] <= gap["difference"] <= gap["ci_high"]
    assert route["share_of_gap"] == pytest.approx(route["difference"] / gap["difference"])
    assert 0.2 < route["share_of_gap_ci_low"] < route["share_of_gap"] < route["share_of_gap_ci_high"] < 0.8
    decoding = table[table["comparison"] == "cell_decoding"].set_index("experiment")
    assert list(decoding.index) == ["hr", "lr", "sr"]
    assert (decoding["ci_low"] >= 0).all() and decoding.loc["lr", "ci_low"] > 0  # decoding only fixes here
    assert decoding.loc["lr", "difference"] == pytest.approx(decoding.loc["lr", "experiment_value"]
                                                             - decoding.loc["lr", "baseline_value"])


def test_share_of_gap_only_where_the_route_is_a_measured_difference():
    experiments = [_experiment("hr", "hr"), _experiment("lr", "lr:x4"), _experiment("sr", "sr:m:x4")]
    frames = [_predictions(seed=0, experiment=name, accuracy=accuracy, n_cells=12)
              for name, accuracy in (("hr", 0.9), ("lr", 0.4), ("sr", 0.4))]
    frames[2] = frames[1].assign(experiment="sr")  # the same predictions: a difference of exactly 0
    table = class_metrics.comparisons(pd.concat(frames, ignore_index=True), experiments, n_boot=300)
    route = table[table["comparison"] == "sr_route"].iloc[0]
    assert route["ci_low"] <= 0 <= route["ci_high"]
    assert np.isnan(route[["share_of_gap", "share_of_gap_ci_low", "share_of_gap_ci_high"]].astype(float)).all()
