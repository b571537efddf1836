"""balance: class balancing of the training split only (SMOTE, random oversampling, class weights).

SMOTE works on the flattened fixed-size training images and reshapes the synthetic rows back
into images. Only the training split is ever resampled: validation and test images are never
touched, and every synthetic row carries ``synthetic=True`` and the ids of its parents (for
SMOTE the two real images nearest to it, the ends of the segment it was drawn on).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

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


def _parents(synthetic: np.ndarray, real: np.ndarray, real_ids: np.ndarray) -> list[list[str]]:
    # |a - b|^2 = |a|^2 - 2 a.b + |b|^2: a matrix product instead of an (n, m, pixels) array.
    distances = (synthetic**2).sum(1)[:, None] - 2.0 * synthetic @ real.T + (real**2).sum(1)[None, :]
    nearest = np.argsort(distances, axis=1)[:, :2]
    return [list(real_ids[row]) for row in nearest]


def balance_split(images: np.ndarray, labels: np.ndarray, image_ids: np.ndarray, method: str,
                  sampling_strategy="minority_to_median", k_neighbors: int = 5, seed: int = 0):
    """Resample the training images. Returns (images, labels, ids, synthetic, parents)."""
    n = len(labels)
    unchanged = (images, labels, image_ids, np.zeros(n, bool), [[] for _ in range(n)])
    if method in ("none", "class_weight"):
        return unchanged
    wanted = target_counts(labels, sampling_strategy)
    counts = pd.Series(labels).value_counts()
    for label in sorted(wanted):
        if counts.get(label, 0) < 2 and method == "smote":
            log.warning("class %s has %d training image(s): SMOTE needs at least 2 to interpolate; "
                        "left as it is", CLASS_NAMES[label], counts.get(label, 0))
            del wanted[label]
    if not wanted:
        log.info("no class below its target count; nothing to resample")
        return unchanged

    flat = images.reshape(n, -1).astype(np.float32)
    sampler_strategy = {label: goal for label, goal in wanted.items()}
    if method == "random_oversample":
        from imblearn.over_sampling import RandomOverSampler

        sampler = RandomOverSampler(sampling_strategy=sampler_strategy, random_state=seed)
    else:
        from imblearn.over_sampling import SMOTE

        smallest = min(counts[label] for label in wanted)
        k = min(k_neighbors, smallest - 1)
        if k < k_neighbors:
            log.warning("k_neighbors lowered from %d to %d: the smallest class to grow has only %d training "
                        "images", k_neighbors, k, smallest)
        sampler = SMOTE(sampling_strategy=sampler_strategy, k_neighbors=k, random_state=seed)
    resampled, new_labels = sampler.fit_resample(flat, labels)
    extra = resampled[n:]
    extra_labels = new_labels[n:]
    peak = np.iinfo(images.dtype).max
    extra_images = np.clip(np.rint(extra), 0, peak).astype(images.dtype).reshape((-1,) + images.shape[1:])
    parents = []
    for label in np.unique(extra_labels):
        rows = np.flatnonzero(extra_labels == label)
        real = np.flatnonzero(labels == label)
        parents_of = _parents(extra[rows], flat[real], image_ids[real])
        parents.extend(zip(rows, parents_of))
    parents = [p for _, p in sorted(parents, key=lambda item: item[0])]
    extra_ids = np.array([f"{method}/{CLASS_NAMES[l]}/{i:05d}" for i, l in enumerate(extra_labels)])
    for label, goal in sorted(wanted.items()):
        log.info("class %s: %d -> %d training images (%s)", CLASS_NAMES[label], counts[label], goal, method)
    return (np.concatenate([images, extra_images]), np.concatenate([labels, extra_labels]),
            np.concatenate([image_ids, extra_ids]), np.concatenate([np.zeros(n, bool), np.ones(len(extra), bool)]),
            [[] for _ in range(n)] + parents)
