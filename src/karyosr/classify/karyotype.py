"""Karyotype-level decoding: the chromosomes of one metaphase cell labelled jointly.

A normal human metaphase holds two copies of each autosome (labels 0-21) and XX or XY (X = 22,
Y = 23). An image classifier labels each chromosome on its own, so it can give a cell three 5s and
one 4 when one 4 looks like a 5. Decoding assigns the chromosomes of a cell to the slots of a
normal karyotype (two per autosome; X, X or X, Y) by minimum total negative log-probability, the
most probable labelling a normal karyotype allows, once per sex hypothesis, and keeps the likelier
hypothesis (lower total cost).

A cell with fewer than 46 chromosomes leaves slots empty. A cell with more has n - 46 chromosomes
that no slot can take: the assignment gets n - 46 overflow columns, each costing a chromosome
its own best -log p, so a chromosome placed there keeps its independent prediction and which
chromosomes become extra is decided by the same optimum. Decoding thus never squeezes 47
chromosomes into 46 slots.

Decoding corrects a classifier's mistakes under the assumption of a normal karyotype; it must not
hide a real abnormality. `cell_flags` says why a cell may be numerically abnormal: its count where
that is evidence, and the likelihood ratio of the best labelling with one extra copy of a class
against the best normal one, from calibrated probabilities; the tables keep both labels.
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

CELL_COLUMNS = ["experiment", "seed", "cell", "chromosomes", "sex", "true_sex", "relabelled", "lacking", "extra_copy",
                "extra_copy_log10_ratio", "flagged", "reason"]


# Copies of X and Y a normal karyotype of each decoded sex holds: (fewest X, most X, fewest Y, most Y).
SEX_CHROMOSOME_COPIES = {"XX": (2, 2, 0, 0), "XY": (1, 1, 1, 1), UNDETERMINED: (1, 2, 0, 1)}


def copy_range(sex: str) -> tuple[np.ndarray, np.ndarray]:
    """The fewest and most copies of each class a normal karyotype of this sex holds."""
    low, high = np.zeros(N_CLASSES, int), np.zeros(N_CLASSES, int)
    low[:X_LABEL] = high[:X_LABEL] = 2
    low[X_LABEL], high[X_LABEL], low[Y_LABEL], high[Y_LABEL] = SEX_CHROMOSOME_COPIES[sex]
    return low, high


def assign(probabilities: np.ndarray, sex: str, extra_copy: int | None = None) -> tuple[np.ndarray, float]:
    """The labelling of one cell's chromosomes ((n, 24) class probabilities) that fills the slots of
    a normal karyotype of this sex (plus one slot of class ``extra_copy``) at the least total
    -log p, and that total."""
    cost = -np.log(np.clip(probabilities.astype(np.float64), MIN_PROBABILITY, 1.0))
    copies = copy_range(sex)[0]
    if extra_copy is not None:
        copies = copies + np.eye(N_CLASSES, dtype=int)[extra_copy]
    slots = np.repeat(np.arange(N_CLASSES), copies)
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


def extra_copy_name(sex: str, label: int) -> str:
    """What a normal karyotype of ``sex`` with one more copy of class ``label`` is called: +21,
    XXY, XXX or XYY."""
    if label in (X_LABEL, Y_LABEL):
        return "".join(sorted(sex + CLASS_NAMES[label]))
    return f"+{CLASS_NAMES[label]}"


def extra_copy_evidence(probabilities: np.ndarray) -> tuple[float, str]:
    """How much likelier the cell's chromosomes are with one extra copy of a class than as a normal
    karyotype: log10 of the ratio of the best labelling's likelihood under each (the assignment
    costs of `assign`, slots of either sex plus one class, against the normal slots of either sex),
    and that extra copy (`extra_copy_name`).

    A trisomy's third copy must take some other class's slot under a normal karyotype, at the cost
    of how unlike that class it looks; a classifier's mistake pays the same when it is confident,
    so the probabilities must be calibrated (temperature scaling) for the ratio to mean what it
    says. An incomplete cell leaves slots empty under both hypotheses, so lost images cost nothing
    and count as evidence for neither."""
    normal = min(assign(probabilities, sex)[1] for sex in SEXES)
    best, extra = np.inf, ""
    for sex in SEXES:
        for label in range(N_CLASSES):
            cost = assign(probabilities, sex, extra_copy=label)[1]
            if cost < best - 1e-9:
                best, extra = cost, extra_copy_name(sex, label)
    return max(0.0, (normal - best) / np.log(10)), extra


def cell_flags(probabilities: np.ndarray, decoded: np.ndarray, sex: str, flag: dict) -> dict:
    """Why a cell may be numerically abnormal, from what decoding cannot change. ``flag`` holds the
    classify config keys ``flag_likelihood_ratio`` and ``complete_cells``.

    * More than 46 chromosomes: always flagged (lost images cannot explain it).
    * Fewer than 46: flagged only when ``complete_cells`` says every chromosome of a cell was
      imaged; otherwise images left out of the input explain the count as well as a lost
      chromosome does, so the count and the classes the decoded labels lack (``lacking``) are
      reported, not flagged.
    * One extra copy of a class (`extra_copy_evidence`) at least ``flag_likelihood_ratio`` times likelier
      than a normal karyotype: flagged, naming the class (``extra_copy``).
    """
    n = len(probabilities)
    low, _ = copy_range(sex)
    decoded_counts = np.bincount(decoded, minlength=N_CLASSES)
    lacking = [CLASS_NAMES[k] for k in np.flatnonzero(decoded_counts < low)] if n < NORMAL_CHROMOSOMES else []
    evidence, extra = extra_copy_evidence(probabilities)
    reasons = []
    if n > NORMAL_CHROMOSOMES or (n < NORMAL_CHROMOSOMES and flag["complete_cells"]):
        reasons.append(f"{n} chromosomes (expected {NORMAL_CHROMOSOMES})"
                       + (f", decoded labels lack {', '.join(lacking)}" if lacking else ""))
    flagged_extra = evidence >= np.log10(flag["flag_likelihood_ratio"])
    if flagged_extra:
        reasons.append(f"{extra} is {10 ** evidence:.3g} times likelier than a normal karyotype")
    return {"chromosomes": n, "sex": sex, "lacking": ", ".join(lacking), "extra_copy": extra if flagged_extra else "",
            "extra_copy_log10_ratio": round(evidence, 3), "flagged": bool(reasons), "reason": "; ".join(reasons)}


def true_sex(labels: np.ndarray) -> str:
    """The sex a cell's true labels show: XY with a Y, XX with two X and no Y, "" (unknown) when
    its images hold neither (a lost X or Y image leaves it open)."""
    counts = np.bincount(labels, minlength=N_CLASSES)
    return "XY" if counts[Y_LABEL] else "XX" if counts[X_LABEL] >= 2 else ""


def require_cells(predictions: pd.DataFrame) -> None:
    if "cell" not in predictions:
        raise ValueError("predictions have no 'cell' column (written before each test image's cell was recorded): "
                         "rerun rule predict (snakemake --forcerun predict)")


def decode(predictions: pd.DataFrame, flag: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decode every cell of every run (experiment x seed); ``flag`` as `cell_flags` takes it.

    Returns the predictions with ``confidence`` (the independent prediction's probability) and
    ``predicted_decoded`` added, rows in their input order, and one row per run x cell with its
    decoded sex, its true sex where the predictions carry labels, how many labels decoding changed
    and the flags of `cell_flags`.
    """
    require_cells(predictions)
    table = predictions.reset_index(drop=True)
    probabilities = np.stack(table["probabilities"].to_numpy()) if len(table) else np.zeros((0, N_CLASSES))
    independent = table["predicted"].to_numpy()
    truth = table["label"].to_numpy() if "label" in table else None
    decoded = independent.copy()
    cells = []
    groups = table.groupby(["experiment", "seed", "cell"]).indices
    for experiment, seed, cell in sorted(groups):
        rows = groups[experiment, seed, cell]
        labels, sex = decode_cell(probabilities[rows])
        decoded[rows] = labels
        cells.append({"experiment": experiment, "seed": int(seed), "cell": cell,
                      "true_sex": true_sex(truth[rows]) if truth is not None else "",
                      "relabelled": int((labels != independent[rows]).sum()),
                      **cell_flags(probabilities[rows], labels, sex, flag)})
    table["confidence"] = probabilities.max(axis=1).astype(np.float32)
    table["predicted_decoded"] = decoded
    return table, pd.DataFrame(cells, columns=CELL_COLUMNS)
