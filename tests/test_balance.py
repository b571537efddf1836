"""Class balancing: SMOTE and friends on the training split only."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from imblearn.over_sampling import SMOTE

from karyosr import balance, classify, shards


def _training_set(counts: dict[int, int], size: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    images, labels, ids = [], [], []
    for label, n in counts.items():
        for i in range(n):
            images.append(np.clip(rng.normal(20 * label, 10, (size, size)), 0, 255).astype(np.uint8))
            labels.append(label)
            ids.append(f"d/g{label}/{label}_{i}")
    return np.stack(images), np.array(labels), np.array(ids)


def test_default_lifts_minorities_to_the_median():
    counts = {0: 10, 1: 10, 2: 9, 22: 4, 23: 2}
    images, labels, ids = _training_set(counts)
    out_images, out_labels, out_ids, synthetic, parents = balance.balance_split(images, labels, ids, "smote", seed=0)
    after = pd.Series(out_labels).value_counts()
    assert after[22] == after[23] == 9 and after[0] == 10 and after[2] == 9
    assert synthetic.sum() == (9 - 4) + (9 - 2) and not synthetic[: len(labels)].any()
    assert out_images.shape[1:] == images.shape[1:] and out_images.dtype == np.uint8
    # Every synthetic image names two real parents of its own class.
    for label, is_synthetic, parent_ids in zip(out_labels, synthetic, parents):
        if is_synthetic:
            assert len(parent_ids) == 2 and all(p.startswith(f"d/g{label}/") for p in parent_ids)


def test_k_neighbors_capped_with_a_warning(caplog):
    images, labels, ids = _training_set({0: 10, 1: 10, 23: 3})
    with caplog.at_level(logging.WARNING):
        out = balance.balance_split(images, labels, ids, "smote", k_neighbors=5, seed=0)
    assert "k_neighbors lowered from 5 to 2" in caplog.text
    assert (out[1] == 23).sum() == 10


def test_single_sample_class_is_reported_not_fatal(caplog):
    images, labels, ids = _training_set({0: 6, 1: 6, 22: 3, 23: 1})
    with caplog.at_level(logging.WARNING):
        out = balance.balance_split(images, labels, ids, "smote", seed=0)
    assert "class Y has 1 training image(s)" in caplog.text
    assert (out[1] == 23).sum() == 1 and (out[1] == 22).sum() == 4  # median of 6, 6, 3, 1


def test_smote_rows_match_imblearn_on_the_same_data():
    images, labels, ids = _training_set({0: 8, 1: 8, 22: 3})
    out_images, out_labels, *_ = balance.balance_split(images, labels, ids, "smote", k_neighbors=2, seed=7)
    expected, expected_labels = SMOTE(sampling_strategy={22: 8}, k_neighbors=2, random_state=7).fit_resample(
        images.reshape(len(labels), -1).astype(np.float32), labels)
    np.testing.assert_array_equal(out_labels, expected_labels)
    np.testing.assert_array_equal(out_images.reshape(len(out_labels), -1),
                                  np.clip(np.rint(expected), 0, 255).astype(np.uint8))


def test_random_oversample_and_none_and_class_weights():
    images, labels, ids = _training_set({0: 8, 1: 8, 22: 2})
    out = balance.balance_split(images, labels, ids, "random_oversample", seed=0)
    extra = out[0][len(labels):]
    assert len(extra) == 6 and all(any((e == im).all() for im in images[labels == 22]) for e in extra)
    same = balance.balance_split(images, labels, ids, "none")
    assert same[0] is images and not same[3].any()
    weights = balance.class_weights(labels)
    assert weights[22] == pytest.approx(18 / (3 * 2)) and weights[0] == pytest.approx(18 / (3 * 8)) and weights[5] == 0


def test_explicit_sampling_strategy_by_class_name():
    _, labels, _ = _training_set({0: 8, 22: 2, 23: 2})
    assert balance.target_counts(labels, {"X": 5, "Y": 1}) == {22: 5}
    assert balance.target_counts(labels, 0.5) == {22: 4, 23: 4}
    with pytest.raises(balance.BalanceError):
        balance.target_counts(labels, "all_of_them")


def test_run_balance_resamples_only_the_training_split(tmp_path):
    images, labels, ids = _training_set({0: 8, 1: 8, 22: 3, 23: 3})
    splits = np.where(np.arange(len(ids)) % 4 == 0, "test", "train")
    meta = pd.DataFrame({"image_id": ids, "label": pd.array(labels, dtype="Int8")})
    shards.write_shard(tmp_path / "hr.parquet", meta, list(images))
    shards.write_table(tmp_path / "split.parquet", pd.DataFrame({"image_id": ids, "split": splits}))
    classify.run_balance([tmp_path / "hr.parquet"], tmp_path / "split.parquet", "smote",
                         {"sampling_strategy": "minority_to_median", "k_neighbors": 5}, 0, tmp_path / "out.parquet")
    out = shards.read_shard_meta(tmp_path / "out.parquet")
    real = out[~out["synthetic"]]
    assert set(real["image_id"]) == set(ids[splits == "train"])
    assert out["synthetic"].any() and (out["split"] == "train").all()
    assert not set(out["image_id"]) & set(ids[splits == "test"])
