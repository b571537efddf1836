"""Karyotype-level decoding: the chromosomes of one metaphase cell labelled jointly.

A normal human metaphase holds two copies of each autosome (labels 0-21) and XX or XY (X = 22,
Y = 23). An image classifier labels each chromosome on its own, so it can give a cell three 5s and
one 4 when one 4 looks like a 5. Decoding assigns the chromosomes of a cell to the slots of a
normal karyotype (two per autosome; X, X or X, Y) by minimum total negative log-probability, the
most probable labelling a normal karyotype allows, once per sex hypothesis, and keeps the likelier
hypothesis (lower total cost).

A cell with fewer than 46 chromosomes leaves slots empty. A cell with more has n - 46 chromosomes
that no slot can take: the assignment gets n - 46 "extra copy" columns, each costing a chromosome
its own best -log p, so a chromosome placed there keeps its independent prediction and which
chromosomes become extra is decided by the same optimum. Decoding thus never squeezes 47
chromosomes into 46 slots.

Decoding corrects a classifier's mistakes under the assumption of a normal karyotype; it must not
hide a real abnormality. `cell_flags` says, from the chromosome count and the independent
predictions, why a cell may be numerically abnormal, and the tables keep both labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from karyosr.labels import CLASS_NAMES, N_CLASSES

X_LABEL, Y_LABEL = 22, 23
NORMAL_CHROMOSOMES = 46
SEXES = ("XX", "XY")
# A cell whose chromosomes fit both hypotheses equally well (no Y-like chromosome and at most one
# X-like one): a female cell that lost an X image, a male cell that lost its Y, or 45,X.
UNDETERMINED = "XX or XY"
# Softmax in float32 can round a probability to 0; -log 0 would make an assignment infinitely bad
# instead of merely very unlikely.
MIN_PROBABILITY = 1e-12

CELL_COLUMNS = ["experiment", "seed", "cell", "chromosomes", "sex", "relabelled", "lacking", "excess", "flagged",
                "reason"]


# Copies of X and Y a normal karyotype of each decoded sex holds: (fewest X, most X, fewest Y, most Y).
SEX_CHROMOSOME_COPIES = {"XX": (2, 2, 0, 0), "XY": (1, 1, 1, 1), UNDETERMINED: (1, 2, 0, 1)}


def copy_range(sex: str) -> tuple[np.ndarray, np.ndarray]:
    """The fewest and most copies of each class a normal karyotype of this sex holds."""
    low, high = np.zeros(N_CLASSES, int), np.zeros(N_CLASSES, int)
    low[:X_LABEL] = high[:X_LABEL] = 2
    low[X_LABEL], high[X_LABEL], low[Y_LABEL], high[Y_LABEL] = SEX_CHROMOSOME_COPIES[sex]
    return low, high


def assign(probabilities: np.ndarray, sex: str) -> tuple[np.ndarray, float]:
    """The labelling of one cell's chromosomes ((n, 24) class probabilities) that fills the slots of
    a normal karyotype of this sex at the least total -log p, and that total."""
    cost = -np.log(np.clip(probabilities.astype(np.float64), MIN_PROBABILITY, 1.0))
    slots = np.repeat(np.arange(N_CLASSES), copy_range(sex)[0])
    extra = max(0, len(cost) - len(slots))
    matrix = np.hstack([cost[:, slots], np.repeat(cost.min(axis=1, keepdims=True), extra, axis=1)])
    rows, columns = linear_sum_assignment(matrix)  # every row is assigned: rows <= columns
    labels = np.where(columns < len(slots), slots[np.minimum(columns, len(slots) - 1)], cost.argmin(axis=1)[rows])
    return labels, float(matrix[rows, columns].sum())


def decode_cell(probabilities: np.ndarray) -> tuple[np.ndarray, str]:
    """Decoded labels of one cell and its sex: the hypothesis of lower total cost, UNDETERMINED on
    a tie (the labels are then those of XX)."""
    (labels, female), (male_labels, male) = (assign(probabilities, sex) for sex in SEXES)
    if np.isclose(female, male, rtol=0, atol=1e-9):
        return labels, UNDETERMINED
    return (labels, "XX") if female < male else (male_labels, "XY")


def cell_flags(probabilities: np.ndarray, decoded: np.ndarray, sex: str, confidence: float) -> dict:
    """Why a cell may be numerically abnormal, from what decoding cannot change.

    * The chromosome count is not 46 (a lost or extra chromosome, or images lost before
      classification): ``lacking`` names the classes the decoded labelling holds fewer copies of
      than a normal karyotype, where decoding left a slot empty.
    * A class has more confident independent predictions (probability >= ``confidence``) than a
      normal karyotype of the decoded sex holds (three confident 21s): ``excess``. Only an excess
      counts, since a shortfall of confident predictions is what an unsure classifier gives.
    """
    n = len(probabilities)
    low, high = copy_range(sex)
    confident = probabilities.max(axis=1) >= confidence
    counts = np.bincount(probabilities.argmax(axis=1)[confident], minlength=N_CLASSES)
    decoded_counts = np.bincount(decoded, minlength=N_CLASSES)
    lacking = [CLASS_NAMES[k] for k in np.flatnonzero(decoded_counts < low)] if n < NORMAL_CHROMOSOMES else []
    excess = [f"{counts[k]} confident {CLASS_NAMES[k]} (expected {high[k]})" for k in np.flatnonzero(counts > high)]
    reasons = []
    if n != NORMAL_CHROMOSOMES:
        reasons.append(f"{n} chromosomes (expected {NORMAL_CHROMOSOMES})"
                       + (f", decoded labels lack {', '.join(lacking)}" if lacking else ""))
    reasons += excess
    return {"chromosomes": n, "sex": sex, "lacking": ", ".join(lacking), "excess": "; ".join(excess),
            "flagged": bool(reasons), "reason": "; ".join(reasons)}


def require_cells(predictions: pd.DataFrame) -> None:
    if "cell" not in predictions:
        raise ValueError("predictions have no 'cell' column (written before each test image's cell was recorded): "
                         "rerun rule predict (snakemake --forcerun predict)")


def decode(predictions: pd.DataFrame, confidence: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decode every cell of every run (experiment x seed).

    Returns the predictions with ``confidence`` (the independent prediction's probability) and
    ``predicted_decoded`` added, rows in their input order, and one row per run x cell with its
    decoded sex, how many labels decoding changed and the flags of `cell_flags`.
    """
    require_cells(predictions)
    table = predictions.reset_index(drop=True)
    probabilities = np.stack(table["probabilities"].to_numpy()) if len(table) else np.zeros((0, N_CLASSES))
    independent = table["predicted"].to_numpy()
    decoded = independent.copy()
    cells = []
    groups = table.groupby(["experiment", "seed", "cell"]).indices
    for experiment, seed, cell in sorted(groups):
        rows = groups[experiment, seed, cell]
        labels, sex = decode_cell(probabilities[rows])
        decoded[rows] = labels
        cells.append({"experiment": experiment, "seed": int(seed), "cell": cell,
                      "relabelled": int((labels != independent[rows]).sum()),
                      **cell_flags(probabilities[rows], labels, sex, confidence)})
    table["confidence"] = probabilities.max(axis=1).astype(np.float32)
    table["predicted_decoded"] = decoded
    return table, pd.DataFrame(cells, columns=CELL_COLUMNS)
