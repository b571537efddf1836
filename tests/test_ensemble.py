"""Ensembles: members' probabilities averaged image by image, per seed or over every seed."""

import numpy as np
import pandas as pd
import pytest

from karyosr.classify.ensemble import ALL_SEEDS, average


def predictions(experiment: str, seed: int, probabilities: list[list[float]], image_ids=("a", "b")) -> pd.DataFrame:
    probabilities = [np.asarray(p, dtype=np.float32) for p in probabilities]
    return pd.DataFrame({"image_id": list(image_ids), "cell": ["c1", "c2"][:len(image_ids)], "label": [0, 1][:len(image_ids)],
                         "predicted": [int(p.argmax()) for p in probabilities], "probabilities": probabilities,
                         "experiment": experiment, "seed": seed})


def test_members_outvote_one_confident_mistake_per_seed():
    table = pd.concat([predictions("a", 0, [[0.6, 0.4], [0.3, 0.7]]),
                       predictions("b", 0, [[0.3, 0.7], [0.4, 0.6]]),  # image a: b is wrong
                       predictions("c", 0, [[0.7, 0.3], [0.1, 0.9]]),
                       predictions("a", 1, [[0.1, 0.9], [0.3, 0.7]])])
    out = average(table[table["seed"] == 0], "abc", ["a", "b", "c"])
    assert list(out["predicted"]) == [0, 1]
    assert np.allclose(out["probabilities"].iloc[0], [(0.6 + 0.3 + 0.7) / 3, (0.4 + 0.7 + 0.3) / 3])
    assert set(out["experiment"]) == {"abc"} and set(out["seed"]) == {0}
    assert list(out["cell"]) == ["c1", "c2"] and list(out["label"]) == [0, 1]


def test_per_seed_runs_and_one_run_over_every_seed():
    table = pd.concat([predictions("a", 0, [[0.9, 0.1], [0.2, 0.8]]), predictions("a", 1, [[0.3, 0.7], [0.4, 0.6]])])
    per_seed = average(table, "a2", ["a"])
    assert sorted(per_seed["seed"].unique()) == [0, 1]
    pooled = average(table, "a2", ["a"], over_seeds=True)
    assert list(pooled["seed"].unique()) == [ALL_SEEDS]
    assert np.allclose(np.stack(pooled["probabilities"]), [[0.6, 0.4], [0.3, 0.7]])


def test_missing_member_and_different_test_images_are_named():
    table = pd.concat([predictions("a", 0, [[0.9, 0.1], [0.2, 0.8]]),
                       predictions("b", 0, [[0.9, 0.1], [0.2, 0.8]], image_ids=("a", "z"))])
    with pytest.raises(ValueError, match=r"ens: no predictions of member\(s\) \['q'\]"):
        average(table, "ens", ["a", "q"])
    with pytest.raises(ValueError, match="ens: members .* predict different test images"):
        average(table, "ens", ["a", "b"])


def test_config_names_the_ensemble_key_and_what_is_wrong():
    from karyosr.config import ConfigError, validate

    experiments = [{"name": "a", "input": "hr", "backbone": "plain_cnn"},
                   {"name": "b", "input": "hr", "backbone": "resnet18"}]

    def config(*ensembles):
        return {"classify": {"experiments": [dict(e) for e in experiments], "ensembles": list(ensembles)}}

    assert validate(config({"name": "ab", "members": ["a", "b"]}))["classify"]["ensembles"][0]["over_seeds"] is False
    assert validate(config({"name": "a3", "members": ["a"], "over_seeds": True}))
    for ensemble, message in (({"name": "ab", "members": ["a", "z"]}, r"classify.ensembles.0.members: \['z'\]"),
                              ({"name": "a", "members": ["a", "b"]}, "classify.ensembles.0.name: 'a' is already"),
                              ({"name": "aa", "members": ["a"]}, "unless over_seeds is true")):
        with pytest.raises(ConfigError, match=message):
            validate(config(ensemble))


def test_ensembles_are_compared_with_each_member_per_seed_only():
    from karyosr.classify.ensemble import as_experiment
    from karyosr.classify.metrics import comparison_pairs

    experiments = [{"name": "a", "input": "hr", "backbone": "plain_cnn", "balance": "smote"},
                   {"name": "b", "input": "hr", "backbone": "resnet18", "balance": "smote"}]
    per_seed = as_experiment({"name": "ab", "members": ["a", "b"], "over_seeds": False}, experiments)
    pooled = as_experiment({"name": "a_all", "members": ["a"], "over_seeds": True}, experiments)
    assert per_seed["backbone"] == "plain_cnn+resnet18" and per_seed["input"] == "hr"
    pairs = comparison_pairs(experiments + [per_seed, pooled])
    assert [p[:3] for p in pairs if p[0] == "ensemble"] == [("ensemble", "ab", "a"), ("ensemble", "ab", "b")]
