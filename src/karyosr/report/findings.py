"""The report's findings: sentences generated from its tables (SR gains and rankings,
classification, sex calls and flagged cells; for whole images the registration of the pairs and
the change of NIQE and PIQE by enhancement), each difference with its bootstrap interval and
whether that interval leaves out 0."""

from __future__ import annotations

import pandas as pd

from karyosr.classify import metrics
from karyosr.config import INTERPOLATION_METHODS


def describe_difference(value: float, low: float, high: float, unit: str, digits: int) -> str:
    """'+1.78 dB (95 % CI +1.70 to +1.86; larger than its uncertainty)': a difference, its interval
    and whether the interval leaves out 0; '+1.78 dB (one test group: no interval)' without one
    (`karyosr.classify.metrics.bootstrap_ci` gives none from a single cell or slide)."""
    if pd.isna(low):
        return f"{value:+.{digits}f}{unit} (one test group: no interval)"
    verdict = ("larger than its uncertainty" if low > 0 or high < 0
               else "the interval includes 0: not a measured difference")
    return (f"{value:+.{digits}f}{unit} ({metrics.LEVEL:.0%} CI {low:+.{digits}f} to {high:+.{digits}f}; "
            f"{verdict})")


def ranking(values: pd.DataFrame, methods: list[str], cells: pd.Series, n_boot: int, seed: int = 0) -> str:
    """The method of ``methods`` with the highest mean of ``values`` (image x method, PSNR in dB)
    against the runner-up, by the mean of their per-image differences with a paired bootstrap
    interval over test cells: 'a is ahead of b by +0.30 dB [+0.10, +0.50]' when the interval leaves
    out 0, else 'a and b are not told apart: +0.06 dB [-0.10, +0.20]'."""
    best, second = values[methods].mean().sort_values(ascending=False).index[:2]
    difference = (values[best] - values[second]).dropna()
    low, high = metrics.bootstrap_ci(difference.to_numpy(), n_boot, seed,
                                     clusters=[cells.get(i, i) for i in difference.index])
    if pd.isna(low):
        return f"{best} and {second} are not told apart: {difference.mean():+.2f} dB (one test group: no interval)"
    shown = f"{difference.mean():+.2f} dB [{low:+.2f}, {high:+.2f}]"
    return f"{best} is ahead of {second} by {shown}" if low > 0 else f"{best} and {second} are not told apart: {shown}"


def sr_findings(per_image: pd.DataFrame, split: pd.DataFrame, n_boot: int, seed: int = 0,
                obj: str = "the chromosome") -> list[str]:
    """Per profile, the method with the largest mean PSNR gain over bicubic (inside ``obj`` where
    that was scored), with a bootstrap interval of the per-image gains over test cells (the images
    of a cell, or tiles of a slide, share its staining and blur); then the best method against the
    runner-up and, where that is not already the same pair, the best learned model against the
    next one (`ranking`)."""
    scored_inside = "psnr_fg" in per_image and per_image["psnr_fg"].notna().any()
    metric, where = ("psnr_fg", f" inside {obj}") if scored_inside else ("psnr", "")
    cells = split.set_index("image_id")["group"]
    lines = []
    for profile, rows in per_image.groupby("profile", sort=False):
        psnr = rows.pivot(index="image_id", columns="method", values=metric)
        if "bicubic" not in psnr or psnr.shape[1] < 2:
            continue
        gains = psnr.drop(columns="bicubic").sub(psnr["bicubic"], axis=0)
        best = gains.mean().idxmax()
        gain = gains[best].dropna()
        lead = (f"{best} gains most over bicubic" if gain.mean() > 0
                else f"no method beats bicubic; the closest is {best}")
        low, high = metrics.bootstrap_ci(gain.to_numpy(), n_boot, seed, clusters=[cells.get(i, i) for i in gain.index])
        lines.append(f"{profile}: {lead} in PSNR{where}: {psnr[best].mean():.2f} vs {psnr['bicubic'].mean():.2f} dB, "
                     + describe_difference(gain.mean(), low, high, " dB", 2) + ".")
        methods = list(psnr.mean().sort_values(ascending=False).index)
        learned = [m for m in methods if m not in INTERPOLATION_METHODS]
        rankings = [ranking(psnr, methods, cells, n_boot, seed)]
        if len(learned) > 1 and learned[:2] != methods[:2]:
            rankings.append("of the learned models, " + ranking(psnr, learned, cells, n_boot, seed))
        lines.append(f"{profile}, best vs runner-up in PSNR{where} (per-image differences, {metrics.LEVEL:.0%} "
                     "bootstrap interval over test groups): " + "; ".join(rankings) + ".")
    return lines


def registration_findings(pairs: pd.DataFrame) -> list[str]:
    """How many pairs registered and how well, and why the others were rejected."""
    if not len(pairs):
        return ["No pair of captures to register: every slide needs two magnifications."]
    accepted = pairs[pairs["accepted"].astype(bool)]
    line = (f"Registration: {len(accepted)} of {len(pairs)} pairs of captures accepted"
            + (f" (match score median {accepted['score'].median():.3f}, lowest {accepted['score'].min():.3f}; "
               f"{accepted['seconds'].median():.2f} s per pair)" if len(accepted) else ""))
    reasons = pairs.loc[~pairs["accepted"].astype(bool), "reason"].value_counts()
    if len(reasons):
        line += "; rejected: " + "; ".join(f"{n} x {reason}" for reason, n in reasons.items())
    return [line + "."]


NO_REFERENCE_CAVEAT = ("NIQE and PIQE reward some artefacts (nearest-neighbour blocks score well on PIQE, and any "
                       "sharpening can lower both), so no method is called best on them alone: read them beside the "
                       "full-reference PSNR/SSIM on held-out tiles above.")


def change_findings(changes: pd.DataFrame, profile: str) -> list[str]:
    """Whether each method lowers NIQE and PIQE of the held-out whole images, by how much, with its
    interval over groups (`karyosr.report.tables.quality_changes`); and the caveat that no-reference
    scores are never a ranking alone."""
    if not len(changes):
        return []
    parts = []
    for row in changes.itertuples():
        verdicts = []
        for metric, digits in (("niqe", 2), ("piqe", 1)):
            value, low, high = (getattr(row, f"{metric}_{s}") for s in ("change", "ci_low", "ci_high"))
            if pd.isna(value):
                continue
            if pd.isna(low):  # one held-out group: the change is reported without a verdict
                verdicts.append(f"changes {metric.upper()} by {value:+.{digits}f} (one held-out group: no interval)")
                continue
            word = "lowers" if high < 0 else "raises" if low > 0 else "does not measurably change"
            verdicts.append(f"{word} {metric.upper()} by {describe_difference(value, low, high, '', digits)}")
        parts.append(f"{row.method} " + " and ".join(verdicts))
    return [f"{profile}, held-out whole images ({int(changes['images'].max())} in {int(changes['groups'].max())} "
            "groups), after minus before: " + "; ".join(parts) + ". " + NO_REFERENCE_CAVEAT]


SEX_CHROMOSOME_ACCURACY = {"x_accuracy": "X accuracy", "y_accuracy": "Y accuracy"}


def _points(row) -> str:
    return describe_difference(100 * row["difference"], 100 * row["ci_low"], 100 * row["ci_high"], " points", 1)


def classification_findings(comparisons: pd.DataFrame, over_seeds: pd.DataFrame, cells: pd.DataFrame) -> list[str]:
    """Sentences from `karyosr.classify.metrics.comparisons`: the LR-to-HR accuracy gap and what each SR
    route closes of it, SMOTE's effect on X and Y accuracy, and cell decoding's effect and flags;
    and from ``cells`` (`karyosr.classify.karyotype.decode`, empty without decoding) how often the
    decoded sex is right. A comparison the experiments do not allow is left out."""
    inputs = over_seeds.set_index("experiment")["input"]
    balances = over_seeds.set_index("experiment")["balance"]
    kind = comparisons["comparison"]
    lines = []
    gaps = comparisons[kind == "lr_to_hr_gap"].set_index("baseline")
    routes = comparisons[kind == "sr_route"]
    for lr, group in routes.groupby("baseline", sort=False):
        gap = gaps.loc[lr] if lr in gaps.index else None
        text = (f"LR-to-HR accuracy gap ({gap['experiment']} vs {lr}): {gap['experiment_value']:.1%} vs "
                f"{gap['baseline_value']:.1%}, {_points(gap)}. " if gap is not None
                else f"SR routes vs the LR input {lr} (no HR experiment to measure a gap): ")
        text += "; ".join(
            f"{row['experiment']} ({inputs[row['experiment']]}) "
            + (f"closes {row['share_of_gap']:.0%} [{row['share_of_gap_ci_low']:.0%}, "
               f"{row['share_of_gap_ci_high']:.0%}] of it, " if not pd.isna(row["share_of_gap"]) else "")
            + f"{_points(row)} over LR"
            for _, row in group.iterrows())
        lines.append(text + ".")
    for hr_lr, gap in gaps.iterrows():
        if hr_lr not in set(routes["baseline"]):
            lines.append(f"LR-to-HR accuracy gap ({gap['experiment']} vs {hr_lr}): {gap['experiment_value']:.1%} vs "
                         f"{gap['baseline_value']:.1%}, {_points(gap)}; no SR route on this input to close it.")
    for (smote, other), group in comparisons[kind == "balance"].groupby(["experiment", "baseline"], sort=False):
        effects = [f"{SEX_CHROMOSOME_ACCURACY[row['metric']]} {row['experiment_value']:.0%} vs "
                   f"{row['baseline_value']:.0%}, "
                   + _points(row) for _, row in group.iterrows() if not pd.isna(row["difference"])]
        if effects:
            lines.append(f"SMOTE ({smote} vs {other}, balance {balances[other]}): " + "; ".join(effects) + ".")
    decoding = comparisons[kind == "cell_decoding"]
    if len(decoding):
        clear = decoding[(decoding["ci_low"] > 0) | (decoding["ci_high"] < 0)]
        largest = decoding.loc[decoding["difference"].abs().idxmax()]
        if len(decoding) == 1:
            text = f"Cell decoding changes the accuracy of {largest['experiment']} by {_points(largest)}."
        else:
            text = (f"Cell decoding changes accuracy by {100 * decoding['difference'].min():+.1f} to "
                    f"{100 * decoding['difference'].max():+.1f} points over {len(decoding)} experiments, larger than "
                    f"its uncertainty in {len(clear)}; largest: {largest['experiment']} {_points(largest)}.")
        lines.append(text + " " + flag_summary(cells))
    if len(cells):
        lines.append(sex_call_sentence(metrics.sex_call_summary(cells)))
    return lines


def sex_call_sentence(sex_calls: pd.DataFrame) -> str:
    """'Decoded sex vs the true one (...): 1 of 3 test cells called correctly (2 wrong, 0 undetermined)
    in plain_hr; ...' from `karyosr.classify.metrics.sex_call_summary`, every seed's call counted
    where there are several."""
    parts = []
    for row in sex_calls[sex_calls["cells_known"] > 0].itertuples():
        counts = f"{row.wrong} wrong, {row.undetermined} undetermined"
        parts.append(f"{row.correct} of {row.calls} test cells called correctly ({counts}) in {row.experiment}"
                     if row.seeds == 1 else
                     f"{row.correct} of {row.calls} calls correct ({row.cells_known} test cells × {row.seeds} seeds; "
                     f"{counts}) in {row.experiment}")
    if not parts:
        return "Decoded sex: no test cell's true labels show its sex (a Y, or two X), so no call can be checked."
    return "Decoded sex vs the true one (test cells whose labels hold a Y or two X): " + "; ".join(parts) + "."


def flag_summary(cells: pd.DataFrame) -> str:
    """How many test cells were flagged in any run, told apart by the evidence: an extra copy of a
    class likelier than a normal karyotype (what a trisomy looks like; ``extra_copy`` of
    `karyosr.classify.karyotype.cell_flags`) or the chromosome count alone."""
    flagged = cells[cells["flagged"].astype(bool)]
    text = (f"{flagged['cell'].nunique()} of {cells['cell'].nunique()} test cells are flagged as possible numerical "
            "abnormalities in at least one run (table 'Classification: flagged cells')")
    if flagged.empty:
        return text + "."
    extra = flagged.loc[flagged["extra_copy"].fillna("").astype(bool), "cell"].unique()
    count_only = flagged.loc[~flagged["cell"].isin(extra), "cell"].nunique()
    return (text + f": {len(extra)} for an extra copy of a class likelier than a normal karyotype, "
            f"{count_only} for their chromosome count alone.")
