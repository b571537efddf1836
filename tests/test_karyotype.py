"""Cell decoding on constructed cells: the joint labelling, the sex hypothesis and the flags."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from karyosr.classify import karyotype
from karyosr.labels import CLASS_NAMES, N_CLASSES

FEMALE = np.r_[np.repeat(np.arange(22), 2), 22, 22]
MALE = np.r_[np.repeat(np.arange(22), 2), 22, 23]
CHR = {name: label for label, name in enumerate(CLASS_NAMES)}


def confident(labels, p=0.9):
    """Class probabilities with ``p`` on each true label and the rest spread evenly."""
    probabilities = np.full((len(labels), N_CLASSES), (1 - p) / (N_CLASSES - 1))
    probabilities[np.arange(len(labels)), labels] = p
    return probabilities


def unsure(probabilities, row, shares: dict[int, float]):
    """Row ``row`` split between classes as ``shares``, the rest spread evenly."""
    rest = (1 - sum(shares.values())) / (N_CLASSES - len(shares))
    probabilities[row] = rest
    for label, share in shares.items():
        probabilities[row, label] = share
    return probabilities


@pytest.mark.parametrize("truth, sex", [(FEMALE, "XX"), (MALE, "XY")])
def test_a_permuted_perfect_cell_decodes_perfectly_with_its_sex(truth, sex):
    order = np.random.default_rng(0).permutation(len(truth))
    labels, decoded_sex = karyotype.decode_cell(confident(truth[order]))
    np.testing.assert_array_equal(labels, truth[order])
    assert decoded_sex == sex


FLAG = {"flag_likelihood_ratio": 1000, "complete_cells": False}
COMPLETE = {**FLAG, "complete_cells": True}


def drop(truth, name, copies=1):
    return np.delete(truth, np.flatnonzero(truth == CHR[name])[:copies])


def test_decoding_fixes_a_swap_the_independent_argmax_makes():
    probabilities = confident(FEMALE)
    # one chromosome 6 looks slightly more like a 5: three 5s and one 6 by argmax
    six = np.flatnonzero(FEMALE == CHR["6"])[0]
    unsure(probabilities, six, {CHR["5"]: 0.5, CHR["6"]: 0.45})
    assert (probabilities.argmax(axis=1) == CHR["5"]).sum() == 3
    labels, sex = karyotype.decode_cell(probabilities)
    np.testing.assert_array_equal(labels, FEMALE)
    flags = karyotype.cell_flags(probabilities, labels, sex, COMPLETE)
    assert not flags["flagged"] and flags["reason"] == ""  # an unsure mistake is no abnormality
    assert flags["extra_copy_log10_ratio"] < 0.1


def test_a_normal_but_incomplete_cell_reports_its_count_and_is_flagged_only_when_cells_are_complete():
    truth = drop(drop(drop(MALE, "21"), "3"), "7")  # 43 images: a real set leaves chromosomes out
    probabilities = confident(truth, p=0.99)
    unsure(probabilities, np.flatnonzero(truth == CHR["4"])[0], {CHR["5"]: 0.5, CHR["4"]: 0.4})
    labels, sex = karyotype.decode_cell(probabilities)
    np.testing.assert_array_equal(labels, truth)
    assert sex == "XY"
    flags = karyotype.cell_flags(probabilities, labels, sex, FLAG)
    assert not flags["flagged"] and flags["chromosomes"] == 43 and flags["lacking"] == "3, 7, 21"
    assert flags["extra_copy"] == "" and flags["extra_copy_log10_ratio"] < 1
    flags = karyotype.cell_flags(probabilities, labels, sex, COMPLETE)
    assert flags["flagged"] and flags["reason"] == "43 chromosomes (expected 46), decoded labels lack 3, 7, 21"


def test_45_x_is_flagged_for_its_count_only_when_cells_are_complete():
    truth = drop(FEMALE, "X")
    labels, sex = karyotype.decode_cell(confident(truth, p=0.99))
    np.testing.assert_array_equal(labels, truth)
    assert sex == karyotype.UNDETERMINED  # one X and no Y: 45,X or a male cell that lost its Y
    assert not karyotype.cell_flags(confident(truth, p=0.99), labels, sex, FLAG)["flagged"]
    flags = karyotype.cell_flags(confident(truth, p=0.99), labels, sex, COMPLETE)
    assert flags["flagged"] and flags["reason"] == "45 chromosomes (expected 46)"


def test_a_trisomic_cell_keeps_its_third_21_and_is_flagged_for_its_count():
    truth = np.r_[FEMALE, CHR["21"]]
    probabilities = confident(truth, p=0.97)
    labels, sex = karyotype.decode_cell(probabilities)
    np.testing.assert_array_equal(labels, truth)  # the 47th chromosome keeps its own best class
    flags = karyotype.cell_flags(probabilities, labels, sex, FLAG)
    assert flags["flagged"] and flags["reason"] == "47 chromosomes (expected 46)"


@pytest.mark.parametrize("extra, expected", [("21", "+21"), ("13", "+13"), ("X", "XXY")])
def test_an_extra_copy_in_an_incomplete_cell_is_flagged_by_its_likelihood_ratio_not_silently_corrected(extra, expected):
    # 47 chromosomes of which four were not imaged: the count (43) says nothing, the third copy does
    truth = np.r_[drop(drop(MALE, "2", 2), "9", 2), CHR[extra]]
    probabilities = confident(truth, p=0.99)
    labels, sex = karyotype.decode_cell(probabilities)
    assert (labels != truth).any()  # decoding alone forces a normal karyotype on it
    flags = karyotype.cell_flags(probabilities, labels, sex, FLAG)
    assert flags["flagged"] and flags["extra_copy"] == expected
    # the third copy must take an empty slot it looks unlike (p = 0.01 / 23) under a normal karyotype
    assert flags["extra_copy_log10_ratio"] == pytest.approx(np.log10(0.99 / (0.01 / 23)), abs=0.01)
    assert flags["reason"].startswith(f"{expected} is 2.28e+03 times likelier than a normal karyotype")
    strict = karyotype.cell_flags(probabilities, labels, sex, {**FLAG, "flag_likelihood_ratio": 10_000})
    assert not strict["flagged"] and strict["extra_copy"] == ""


def test_true_sex_comes_from_the_labels_and_stays_unknown_without_both_x_or_a_y():
    assert karyotype.true_sex(MALE) == "XY" and karyotype.true_sex(FEMALE) == "XX"
    assert karyotype.true_sex(drop(FEMALE, "X")) == ""


def _predictions(cells: dict[str, np.ndarray], experiment="e", seed=0) -> pd.DataFrame:
    frames = []
    for cell, truth in cells.items():
        probabilities = confident(truth, p=0.99)
        frames.append(pd.DataFrame({"image_id": [f"{cell}/{i:02d}" for i in range(len(truth))], "cell": cell,
                                    "label": truth, "predicted": probabilities.argmax(axis=1),
                                    "probabilities": list(probabilities), "experiment": experiment, "seed": seed}))
    return pd.concat(frames, ignore_index=True)


def test_decode_keeps_both_labels_and_flags_the_trisomic_cell():
    trisomic = FEMALE.copy()
    trisomic[np.flatnonzero(trisomic == CHR["22"])[0]] = CHR["21"]  # trisomy 21 with one 22 not imaged
    predictions = _predictions({"c1": MALE, "c2": trisomic})
    table, cells = karyotype.decode(predictions, FLAG)
    assert list(table["image_id"]) == list(predictions["image_id"])
    np.testing.assert_array_equal(table["predicted"], predictions["predicted"])  # the independent argmax stays
    c2 = table[table["cell"] == "c2"]
    assert (c2["predicted"] == CHR["21"]).sum() == 3 and (c2["predicted_decoded"] == CHR["21"]).sum() == 2
    assert list(cells.columns) == karyotype.CELL_COLUMNS
    cells = cells.set_index("cell")
    assert not cells.loc["c1", "flagged"] and cells.loc["c1", "sex"] == "XY" and cells.loc["c1", "relabelled"] == 0
    assert cells.loc["c1", "true_sex"] == "XY" and cells.loc["c2", "true_sex"] == "XX"
    assert cells.loc["c2", "flagged"] and cells.loc["c2", "relabelled"] == 1 and cells.loc["c2", "extra_copy"] == "+21"
    np.testing.assert_allclose(table["confidence"], 0.99, rtol=1e-6)


def test_decode_is_order_free_and_needs_cells():
    predictions = _predictions({"c1": MALE, "c2": FEMALE[:-3]})
    table, cells = karyotype.decode(predictions, FLAG)
    shuffled, cells_shuffled = karyotype.decode(predictions.sample(frac=1, random_state=1), FLAG)
    pd.testing.assert_frame_equal(cells, cells_shuffled)
    pd.testing.assert_frame_equal(table.set_index("image_id").sort_index(),
                                  shuffled.set_index("image_id").sort_index())
    with pytest.raises(ValueError, match="rerun rule predict"):
        karyotype.decode(predictions.drop(columns="cell"), FLAG)
