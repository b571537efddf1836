"""Ensembles: several classifiers' calibrated probabilities averaged image by image, then decoded
per cell like any experiment's.

An ensemble names member experiments. Per seed, the members' probabilities of each test image are
averaged (``over_seeds: false``: one ensemble run per seed, so its interval still holds the
training variation); with ``over_seeds: true`` every member run of every seed is averaged into
one run (seed -1), the usual way to spend several trainings on one set of labels. The members'
probabilities are already calibrated (each divides its logits by its own temperature), so a
member that is over- or underconfident does not outvote the others.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ALL_SEEDS = -1  # the seed of an ensemble run over every seed


def average(predictions: pd.DataFrame, name: str, members: list[str], over_seeds: bool = False) -> pd.DataFrame:
    """The ensemble's predictions (the columns of one experiment's: image_id, cell, label,
    predicted, probabilities, experiment, seed) from its members' rows of ``predictions``.
    ValueError naming the ensemble when a member has no predictions or members predict different
    test images."""
    missing = sorted(set(members) - set(predictions["experiment"]))
    if missing:
        raise ValueError(f"classify.ensembles {name}: no predictions of member(s) {missing}")
    rows = predictions[predictions["experiment"].isin(members)]
    if over_seeds:
        rows = rows.assign(seed=ALL_SEEDS)
    images = {member: frozenset(part["image_id"]) for member, part in rows.groupby("experiment")}
    if len(set(images.values())) > 1:
        raise ValueError(f"classify.ensembles {name}: members {members} predict different test images "
                         "(an ensemble averages the same images; use members with the same split)")
    out = []
    for seed, runs in rows.groupby("seed", sort=True):
        first = runs.drop_duplicates("image_id").set_index("image_id")
        stacked = np.stack(runs["probabilities"].to_numpy())
        codes, order = pd.factorize(runs["image_id"])
        summed = np.zeros((len(order), stacked.shape[1]), dtype=np.float64)
        np.add.at(summed, codes, stacked)
        mean = (summed / np.bincount(codes)[:, None]).astype(np.float32)
        out.append(pd.DataFrame({"image_id": order, "cell": first.loc[order, "cell"].to_numpy(),
                                 "label": first.loc[order, "label"].to_numpy(), "predicted": mean.argmax(1),
                                 "probabilities": list(mean), "experiment": name, "seed": seed}))
    return pd.concat(out, ignore_index=True)


def as_experiment(ensemble: dict, experiments: list[dict]) -> dict:
    """The ensemble as the summary tables list an experiment: its members' backbones, inputs and
    balancing joined with '+' where they differ, and its members."""
    members = [e for e in experiments if e["name"] in ensemble["members"]]

    def joined(key: str) -> str:
        return "+".join(dict.fromkeys(str(e[key]) for e in members))

    return {"name": ensemble["name"], "backbone": joined("backbone"), "input": joined("input"),
            "balance": joined("balance"), "members": list(ensemble["members"]),
            "over_seeds": bool(ensemble["over_seeds"])}


def add_ensembles(predictions: pd.DataFrame, experiments: list[dict],
                  ensembles: list[dict]) -> tuple[pd.DataFrame, list[dict]]:
    """``predictions`` with every ensemble's rows after the experiments', and ``experiments`` with
    each ensemble as `as_experiment` describes it."""
    if not ensembles:
        return predictions, experiments
    added = [average(predictions, e["name"], e["members"], e["over_seeds"]) for e in ensembles]
    return (pd.concat([predictions, *added], ignore_index=True),
            experiments + [as_experiment(e, experiments) for e in ensembles])
