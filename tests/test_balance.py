"""Class balancing: SMOTE and friends on the training split only."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from imblearn.over_sampling import SMOTE

from karyosr.classify import balance
from karyosr.io import shards


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


def test_smote_parents_are_the_pair_each_sample_was_drawn_between():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 22, 23], [10, 10, 6, 4])
    # Distinct images in every class (_training_set's X and Y means saturate at 255); the X
    # images are one texture at six brightness levels, points on a line, where a sample drawn
    # between two far images has other images nearer to it than its parents.
    images = np.clip(rng.normal(120, 40, (len(labels), 12, 12)), 0, 255).astype(np.uint8)
    images[labels == 22] = rng.integers(0, 40, (12, 12))[None] + 40 * np.arange(6)[:, None, None]
    ids = np.array([f"d/g{label}/{label}_{i}" for i, label in enumerate(labels)])
    out_images, out_labels, out_ids, synthetic, parents = balance.balance_split(images, labels, ids, "smote",
                                                                                 {"X": 20, "Y": 10}, 3, seed=3)
    by_id = dict(zip(ids, images.reshape(len(ids), -1).astype(float)))
    for row in np.flatnonzero(synthetic):
        start, towards = (by_id[p] for p in parents[row])
        direction = towards - start
        gap = (out_images[row].reshape(-1) - start) @ direction / (direction @ direction)
        assert -1e-9 <= gap <= 1 + 1e-9
        # The stored image is the interpolated row rounded to whole grey levels, and the gap is
        # estimated from those rounded pixels: within a grey level; a wrong pair misses by tens.
        np.testing.assert_allclose(out_images[row].reshape(-1), start + gap * direction, atol=1.0)
        assert parents[row][0] != parents[row][1]
        assert {p.split("/")[1] for p in parents[row]} == {f"g{out_labels[row]}"}
    # Not the two real images nearest to the sample, which the parents were once taken to be.
    flat = out_images.reshape(len(out_ids), -1).astype(float)
    nearest_pair_everywhere = all(
        set(parents[row]) == set(ids[labels == out_labels[row]][np.argsort(
            ((flat[: len(ids)][labels == out_labels[row]] - flat[row]) ** 2).sum(1))[:2]])
        for row in np.flatnonzero(synthetic))
    assert not nearest_pair_everywhere


def test_smote_draw_is_seeded_and_picks_among_the_k_nearest():
    rows = np.random.default_rng(0).normal(size=(9, 5)).astype(np.float32)
    start, towards, gaps = balance.smote_draw(rows, 40, 3, seed=11)
    again = balance.smote_draw(rows, 40, 3, seed=11)
    for first, second in zip((start, towards, gaps), again):
        np.testing.assert_array_equal(first, second)
    assert not np.array_equal(gaps, balance.smote_draw(rows, 40, 3, seed=12)[2])
    assert ((gaps >= 0) & (gaps < 1)).all()
    distances = ((rows[:, None] - rows[None]) ** 2).sum(-1)
    for s, t in zip(start, towards):
        assert t != s and t in np.argsort(distances[s])[1:4]
    np.testing.assert_allclose(balance.interpolate(rows, start, towards, gaps),
                               rows[start] + gaps[:, None] * (rows[towards] - rows[start]), rtol=1e-6)


def test_balanced_split_is_deterministic_for_a_seed():
    images, labels, ids = _training_set({0: 8, 1: 8, 22: 3, 23: 4})
    for method in ("smote", "random_oversample"):
        first = balance.balance_split(images, labels, ids, method, seed=5)
        second = balance.balance_split(images, labels, ids, method, seed=5)
        for a, b in zip(first, second):
            np.testing.assert_array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object))


def test_random_oversample_rows_match_imblearn_on_the_same_data():
    from imblearn.over_sampling import RandomOverSampler

    images, labels, ids = _training_set({0: 8, 1: 8, 22: 3, 23: 2})
    images = np.random.default_rng(1).integers(0, 256, images.shape).astype(np.uint8)  # all distinct
    out_images, out_labels, *_ = balance.balance_split(images, labels, ids, "random_oversample", {"X": 8, "Y": 8},
                                                       seed=4)
    expected, expected_labels = RandomOverSampler(sampling_strategy={22: 8, 23: 8}, random_state=4).fit_resample(
        images.reshape(len(labels), -1), labels)
    np.testing.assert_array_equal(out_labels, expected_labels)
    np.testing.assert_array_equal(out_images.reshape(len(out_labels), -1), expected)


def test_random_oversample_parent_is_the_copied_image():
    images, labels, ids = _training_set({0: 8, 1: 8, 22: 3})
    out_images, _, _, synthetic, parents = balance.balance_split(images, labels, ids, "random_oversample", seed=1)
    by_id = dict(zip(ids, images))
    for row in np.flatnonzero(synthetic):
        assert len(parents[row]) == 1
        np.testing.assert_array_equal(out_images[row], by_id[parents[row][0]])


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
    balance.run_balance([tmp_path / "hr.parquet"], tmp_path / "split.parquet", "smote",
                        {"sampling_strategy": "minority_to_median", "k_neighbors": 5}, 0, tmp_path / "out.parquet")
    out = shards.read_shard_meta(tmp_path / "out.parquet")
    real = out[~out["synthetic"]]
    assert set(real["image_id"]) == set(ids[splits == "train"])
    assert out["synthetic"].any() and (out["split"] == "train").all()
    assert not set(out["image_id"]) & set(ids[splits == "test"])
