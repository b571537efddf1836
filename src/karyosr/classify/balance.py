"""balance: class balancing of the training split only (SMOTE, random oversampling, class weights).

SMOTE works on the flattened fixed-size training images and reshapes the synthetic rows back
into images. Only the training split is ever resampled: validation and test images are never
touched, and every synthetic row carries ``synthetic=True`` and the ids of its parents: for
SMOTE the minority image it was drawn from and the neighbour it was interpolated towards (the
sample is ``a + gap * (b - a)`` for parents ``[a, b]`` and a gap in [0, 1)), for random
oversampling the one image it copies.

Both samplers are drawn here rather than by imbalanced-learn, which does not say which images
a sample came from; the draws follow imbalanced-learn's (same neighbours, same random stream),
so a seed gives the rows it would give, and the tests hold the two together.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from karyosr.classify.inputs import load_split
from karyosr.io import shards
from karyosr.labels import CLASS_NAMES, N_CLASSES

log = logging.getLogger(__name__)

METHODS = ("none", "random_oversample", "smote", "class_weight")


class BalanceError(ValueError):
    pass


def target_counts(labels: np.ndarray, sampling_strategy) -> dict[int, int]:
    """Classes to grow and the count each should reach.

    'minority_to_median' (default) lifts the classes below the median class count (in
    karyotypes: X and Y) to the median; a float r lifts every class to r x the largest class;
    a mapping {class name or label: count} is taken as given.
    """
    counts = pd.Series(labels).value_counts()
    if isinstance(sampling_strategy, str):
        if sampling_strategy != "minority_to_median":
            raise BalanceError(f"unknown sampling_strategy {sampling_strategy!r}")
        median = int(np.median(counts.to_numpy()))
        return {int(c): median for c, n in counts.items() if n < median}
    if isinstance(sampling_strategy, (int, float)):
        goal = int(round(sampling_strategy * counts.max()))
        return {int(c): goal for c, n in counts.items() if n < goal}
    wanted = {}
    for key, goal in sampling_strategy.items():
        label = CLASS_NAMES.index(str(key)) if str(key) in CLASS_NAMES else int(key)
        if counts.get(label, 0) < goal:
            wanted[label] = int(goal)
    return wanted


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Inverse-frequency loss weights, N / (K x count), for the 'class_weight' method."""
    counts = np.bincount(labels, minlength=N_CLASSES).astype(float)
    present = counts > 0
    weights = np.zeros(N_CLASSES)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return weights


def smote_draw(class_rows: np.ndarray, n_new: int, k_neighbors: int, seed: int):
    """SMOTE's draw for one class: per new sample the row it starts from, the neighbour (one of
    that row's ``k_neighbors`` nearest in the class) it moves towards, and the gap in [0, 1).

    imbalanced-learn's order of draws from a fresh RandomState(seed) per class: the (row,
    neighbour) pair as one integer below rows x k, then the gaps.
    """
    from sklearn.neighbors import NearestNeighbors

    nearest = NearestNeighbors(n_neighbors=k_neighbors + 1).fit(class_rows)
    # Column 0 is the row itself.
    neighbours = nearest.kneighbors(class_rows, return_distance=False)[:, 1:]
    random_state = np.random.RandomState(seed)
    pairs = random_state.randint(low=0, high=neighbours.size, size=n_new)
    gaps = random_state.uniform(size=n_new)
    start = pairs // k_neighbors
    return start, neighbours[start, pairs % k_neighbors], gaps


def interpolate(rows: np.ndarray, start: np.ndarray, towards: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """``rows[start] + gap * (rows[towards] - rows[start])`` in the rows' dtype."""
    # A float64 gap times the float32 difference, cast back: imbalanced-learn's arithmetic, so
    # the pixels match its SMOTE exactly.
    return (rows[start] + gaps[:, None] * (rows[towards] - rows[start])).astype(rows.dtype)


def new_samples(images: np.ndarray, labels: np.ndarray, wanted: dict[int, int], method: str,
                k_neighbors: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(new images, their labels, their parents as row numbers into ``images``: (n, 2) [start,
    neighbour] for 'smote', (n, 1) for 'random_oversample'), classes in label order."""
    flat = images.reshape(len(labels), -1).astype(np.float32)
    peak = np.iinfo(images.dtype).max
    # One stream over all classes for oversampling, as imbalanced-learn's RandomOverSampler.
    oversample_state = np.random.RandomState(seed)
    new_images, new_labels, parents = [], [], []
    for label, goal in sorted(wanted.items()):
        members = np.flatnonzero(labels == label)
        n_new = goal - len(members)
        if method == "smote":
            start, towards, gaps = smote_draw(flat[members], n_new, k_neighbors, seed)
            rows = interpolate(flat[members], start, towards, gaps)
            new_images.append(np.clip(np.rint(rows), 0, peak).astype(images.dtype).reshape((-1,) + images.shape[1:]))
            parents.append(np.column_stack([members[start], members[towards]]))
        else:
            copied = oversample_state.choice(members, size=n_new, replace=True)
            new_images.append(images[copied])
            parents.append(copied[:, None])
        new_labels.append(np.full(n_new, label, dtype=labels.dtype))
    return np.concatenate(new_images), np.concatenate(new_labels), np.concatenate(parents)


def balance_split(images: np.ndarray, labels: np.ndarray, image_ids: np.ndarray, method: str,
                  sampling_strategy="minority_to_median", k_neighbors: int = 5, seed: int = 0):
    """Resample the training images. Returns (images, labels, ids, synthetic, parents)."""
    n = len(labels)
    unchanged = (images, labels, image_ids, np.zeros(n, bool), [[] for _ in range(n)])
    if method in ("none", "class_weight"):
        return unchanged
    wanted = target_counts(labels, sampling_strategy)
    counts = pd.Series(labels).value_counts()
    # SMOTE interpolates between two images of the class; oversampling copies one.
    fewest = 2 if method == "smote" else 1
    for label in sorted(wanted):
        if counts.get(label, 0) < fewest:
            log.warning("class %s has %d training image(s): %s needs at least %d; left as it is",
                        CLASS_NAMES[label], counts.get(label, 0), "SMOTE" if method == "smote" else method, fewest)
            del wanted[label]
    if not wanted:
        log.info("no class below its target count; nothing to resample")
        return unchanged

    k = k_neighbors
    if method == "smote":
        smallest = min(counts[label] for label in wanted)
        k = min(k_neighbors, smallest - 1)
        if k < k_neighbors:
            log.warning("k_neighbors lowered from %d to %d: the smallest class to grow has only %d training "
                        "images", k_neighbors, k, smallest)
    extra_images, extra_labels, parent_rows = new_samples(images, labels, wanted, method, k, seed)
    extra_ids = np.array([f"{method}/{CLASS_NAMES[l]}/{i:05d}" for i, l in enumerate(extra_labels)])
    for label, goal in sorted(wanted.items()):
        log.info("class %s: %d -> %d training images (%s)", CLASS_NAMES[label], counts[label], goal, method)
    return (np.concatenate([images, extra_images]), np.concatenate([labels, extra_labels]),
            np.concatenate([image_ids, extra_ids]),
            np.concatenate([np.zeros(n, bool), np.ones(len(extra_labels), bool)]),
            [[] for _ in range(n)] + [list(image_ids[row]) for row in parent_rows])


def run_balance(shard_paths, split_manifest, method: str, cfg: dict, seed: int, out_shard) -> None:
    images, labels, ids = load_split(shard_paths, split_manifest, "train")
    images, labels, ids, synthetic, parents = balance_split(
        images, labels, ids, method, cfg["sampling_strategy"], cfg["k_neighbors"], seed)
    meta = pd.DataFrame({"image_id": ids, "label": pd.array(labels, dtype="Int8"),
                         "class_name": [CLASS_NAMES[l] for l in labels], "split": "train",
                         "synthetic": synthetic, "parents": [";".join(p) for p in parents]})
    shards.write_shard(out_shard, meta, list(images))
    counts = meta.groupby("class_name", sort=False)["synthetic"].agg(["size", "sum"])
    log.info("balanced training set (%s): %d images, %d synthetic\n%s", method, len(meta), int(synthetic.sum()),
             counts.to_string())
