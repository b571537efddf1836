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


def test_decoding_fixes_a_swap_the_independent_argmax_makes():
    probabilities = confident(FEMALE)
    # one chromosome 6 looks slightly more like a 5: three 5s and one 6 by argmax
    six = np.flatnonzero(FEMALE == CHR["6"])[0]
    unsure(probabilities, six, {CHR["5"]: 0.5, CHR["6"]: 0.45})
    assert (probabilities.argmax(axis=1) == CHR["5"]).sum() == 3
    labels, sex = karyotype.decode_cell(probabilities)
    np.testing.assert_array_equal(labels, FEMALE)
    flags = karyotype.cell_flags(probabilities, labels, sex, confidence=0.8)
    assert not flags["flagged"] and flags["reason"] == ""  # an unsure mistake is no abnormality


def test_a_cell_with_a_missing_chromosome_still_decodes_and_is_flagged_with_the_empty_slot():
    truth = np.delete(MALE, np.flatnonzero(MALE == CHR["21"])[0])
    probabilities = confident(truth)
    unsure(probabilities, np.flatnonzero(truth == CHR["3"])[0], {CHR["4"]: 0.5, CHR["3"]: 0.4})
    labels, sex = karyotype.decode_cell(probabilities)
    np.testing.assert_array_equal(labels, truth)
    assert sex == "XY"
    flags = karyotype.cell_flags(probabilities, labels, sex, confidence=0.8)
    assert flags["flagged"] and flags["chromosomes"] == 45 and flags["lacking"] == "21"
    assert flags["reason"] == "45 chromosomes (expected 46), decoded labels lack 21"


def test_sex_is_undetermined_when_both_hypotheses_fit_equally():
    truth = MALE[MALE != CHR["Y"]]  # a male cell whose Y image was lost, or 45,X
    labels, sex = karyotype.decode_cell(confident(truth))
    np.testing.assert_array_equal(labels, truth)
    assert sex == karyotype.UNDETERMINED
    flags = karyotype.cell_flags(confident(truth), labels, sex, confidence=0.8)
    assert flags["lacking"] == ""  # one X and no Y fit either sex; only the count flags it


def test_a_trisomic_cell_keeps_its_third_21_and_is_flagged():
    truth = np.r_[FEMALE, CHR["21"]]
    probabilities = confident(truth, p=0.97)
    labels, sex = karyotype.decode_cell(probabilities)
    np.testing.assert_array_equal(labels, truth)  # the 47th chromosome keeps its own best class
    flags = karyotype.cell_flags(probabilities, labels, sex, confidence=0.9)
    assert flags["flagged"]
    assert flags["excess"] == "3 confident 21 (expected 2)"
    assert flags["reason"] == "47 chromosomes (expected 46); 3 confident 21 (expected 2)"


def test_three_confident_21s_in_46_chromosomes_are_flagged_not_silently_corrected():
    truth = FEMALE.copy()
    truth[np.flatnonzero(truth == CHR["22"])[0]] = CHR["21"]  # trisomy 21 with one 22 lost
    probabilities = confident(truth, p=0.97)
    labels, sex = karyotype.decode_cell(probabilities)
    assert (labels == CHR["21"]).sum() == 2  # decoding alone would call the cell normal
    flags = karyotype.cell_flags(probabilities, labels, sex, confidence=0.9)
    assert flags["flagged"] and flags["reason"] == "3 confident 21 (expected 2)"


def _predictions(cells: dict[str, np.ndarray], experiment="e", seed=0) -> pd.DataFrame:
    frames = []
    for cell, truth in cells.items():
        probabilities = confident(truth, p=0.97)
        frames.append(pd.DataFrame({"image_id": [f"{cell}/{i:02d}" for i in range(len(truth))], "cell": cell,
                                    "label": truth, "predicted": probabilities.argmax(axis=1),
                                    "probabilities": list(probabilities), "experiment": experiment, "seed": seed}))
    return pd.concat(frames, ignore_index=True)


def test_decode_keeps_both_labels_and_flags_the_trisomic_cell():
    trisomic = FEMALE.copy()
    trisomic[np.flatnonzero(trisomic == CHR["22"])[0]] = CHR["21"]
    predictions = _predictions({"c1": MALE, "c2": trisomic})
    table, cells = karyotype.decode(predictions, confidence=0.9)
    assert list(table["image_id"]) == list(predictions["image_id"])
    np.testing.assert_array_equal(table["predicted"], predictions["predicted"])  # the independent argmax stays
    c2 = table[table["cell"] == "c2"]
    assert (c2["predicted"] == CHR["21"]).sum() == 3 and (c2["predicted_decoded"] == CHR["21"]).sum() == 2
    assert list(cells.columns) == karyotype.CELL_COLUMNS
    cells = cells.set_index("cell")
    assert not cells.loc["c1", "flagged"] and cells.loc["c1", "sex"] == "XY" and cells.loc["c1", "relabelled"] == 0
    assert cells.loc["c2", "flagged"] and cells.loc["c2", "relabelled"] == 1
    assert cells.loc["c2", "reason"] == "3 confident 21 (expected 2)"
    np.testing.assert_allclose(table["confidence"], 0.97, rtol=1e-6)


def test_decode_is_order_free_and_needs_cells():
    predictions = _predictions({"c1": MALE, "c2": FEMALE[:-3]})
    table, cells = karyotype.decode(predictions, confidence=0.9)
    shuffled, cells_shuffled = karyotype.decode(predictions.sample(frac=1, random_state=1), confidence=0.9)
    pd.testing.assert_frame_equal(cells, cells_shuffled)
    pd.testing.assert_frame_equal(table.set_index("image_id").sort_index(),
                                  shuffled.set_index("image_id").sort_index())
    with pytest.raises(ValueError, match="rerun rule predict"):
        karyotype.decode(predictions.drop(columns="cell"), confidence=0.9)
