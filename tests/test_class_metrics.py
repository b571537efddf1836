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


def test_over_seeds_t_interval_with_several_seeds():
    runs = pd.DataFrame({"experiment": "e", "seed": [0, 1, 2], "accuracy": [0.5, 0.6, 0.7],
                         "accuracy_ci_low": 0.0, "accuracy_ci_high": 1.0, "macro_f1": [0.8, 0.9, 1.0],
                         "x_accuracy": 1.0, "y_accuracy": np.nan})
    table = class_metrics.over_seeds(runs, [EXPERIMENT])
    half = 4.302653 * 0.1 / np.sqrt(3)
    assert table.loc[0, "accuracy_mean"] == pytest.approx(0.6)
    assert table.loc[0, "accuracy_ci_low"] == pytest.approx(0.6 - half, rel=1e-5)
    assert table.loc[0, "accuracy_ci_high"] == pytest.approx(0.6 + half, rel=1e-5)
    assert table.loc[0, "macro_f1_ci_high"] == 1.0  # 0.9 + half, cut to the metric's range
    assert np.isnan(table.loc[0, "y_accuracy_mean"]) and table.loc[0, "seeds"] == 3
    assert table.loc[0, "interval"] == "95% t-interval over 3 seeds"


def test_over_seeds_shows_the_run_interval_with_one_seed():
    runs = class_metrics.run_summary(_predictions(), n_boot=300)
    table = class_metrics.over_seeds(runs, [EXPERIMENT])
    for metric in ("accuracy", "macro_f1", "x_accuracy"):
        assert table.loc[0, f"{metric}_ci_low"] == runs.loc[0, f"{metric}_ci_low"]
        assert table.loc[0, f"{metric}_ci_low"] < table.loc[0, f"{metric}_ci_high"]  # not ± 0
    assert table.loc[0, "interval"] == "95% cell bootstrap of the single run"


def test_per_class_matches_scikit_learn_and_counts_support_once():
    predictions = pd.concat([_predictions(seed=0), _predictions(seed=1)], ignore_index=True)
    table = class_metrics.per_class(predictions).set_index("class")
    labels = list(range(24))
    np.testing.assert_allclose(table["precision"], precision_score(predictions.label, predictions.predicted,
                                                                   labels=labels, average=None, zero_division=0))
    np.testing.assert_allclose(table["accuracy"], recall_score(predictions.label, predictions.predicted,
                                                               labels=labels, average=None, zero_division=0))
    np.testing.assert_allclose(table["f1"], f1_score(predictions.label, predictions.predicted, labels=labels,
                                                     average=None, zero_division=0))
    assert table.loc["X", "support"] == 5  # 5 test images, predicted by 2 seeds
    absent = class_metrics.per_class(predictions[predictions.label != 23]).set_index("class")
    assert np.isnan(absent.loc["Y", "accuracy"]) and absent.loc["Y", "support"] == 0


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
    assert 0.2 < route["share_of_gap"] < 0.8
    decoding = table[table["comparison"] == "cell_decoding"].set_index("experiment")
    assert list(decoding.index) == ["hr", "lr", "sr"]
    assert (decoding["ci_low"] >= 0).all() and decoding.loc["lr", "ci_low"] > 0  # decoding only fixes here
    assert decoding.loc["lr", "difference"] == pytest.approx(decoding.loc["lr", "experiment_value"]
                                                             - decoding.loc["lr", "baseline_value"])
