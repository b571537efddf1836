"""The report's tables: images per stage and class, the SR method and classification comparisons
(best value in bold where a best can be named, as HTML and Markdown), the per-class heat map,
flagged cells, rejected inputs and software versions; for whole images the registration of the
pairs, the tiles per split, the PSNR gains over bicubic and Lanczos and the change of NIQE and PIQE
by enhancement, with bootstrap intervals over groups; each saved as CSV and Parquet beside the page."""

from __future__ import annotations

import html
import logging
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from karyosr.classify import karyotype
from karyosr.classify.metrics import bootstrap_ci
from karyosr.dataset.split import SPLITS
from karyosr.io import atomic, shards
from karyosr.labels import CLASS_NAMES
from karyosr.whole.quality import CAPTURE

log = logging.getLogger(__name__)

PACKAGES = ("karyosr", "snakemake", "numpy", "pandas", "pyarrow", "opencv-python-headless", "scipy", "matplotlib")


def stage_counts(ingest: pd.DataFrame, quarantined: pd.DataFrame, cropped: pd.DataFrame,
                 rejected: pd.DataFrame, split: pd.DataFrame) -> pd.DataFrame:
    """How many images each stage took in, kept and set aside."""
    rows = [
        ("ingest", len(ingest) + len(quarantined), len(ingest), len(quarantined), "quarantined: unreadable or unlabelled"),
        ("crop_filter", len(ingest), len(cropped), len(rejected), "rejected: no foreground or too little detail"),
    ]
    for name in SPLITS:
        n = int((split["split"] == name).sum())
        groups = split.loc[split["split"] == name, "group"].nunique()
        rows.append((f"split: {name}", len(split), n, 0, f"{groups} groups"))
    return pd.DataFrame(rows, columns=["stage", "in", "kept", "set aside", "note"])


def class_counts(split: pd.DataFrame) -> pd.DataFrame:
    table = pd.crosstab(split["label"].astype(int), split["split"]).reindex(columns=list(SPLITS), fill_value=0)
    table = table.reindex(range(len(CLASS_NAMES)), fill_value=0)
    table.insert(0, "class", CLASS_NAMES)
    table["total"] = table[list(SPLITS)].sum(axis=1)
    # crosstab names the column axis 'split'; pandas would print that name as an extra column.
    return table.reset_index(drop=True).rename_axis(columns=None)


COMPARISON_COLUMNS = [
    # (summary column, heading, better: "higher", "lower", or None where no value is called best)
    ("psnr_mean", "PSNR (dB)", "higher"),
    ("ssim_mean", "SSIM", "higher"),
    ("psnr_fg_mean", "PSNR fg (dB)", "higher"),
    ("ssim_fg_mean", "SSIM fg", "higher"),
    ("mse_mean", "MSE", "lower"),
    ("mse_fg_mean", "MSE fg", "lower"),
    # no-reference scores reward some artefacts (nearest-neighbour blocks score well on PIQE), so
    # they name no best method
    ("niqe_mean", "NIQE", None),
    ("piqe_mean", "PIQE", None),
    ("psnr_gain_db", "PSNR vs bicubic (dB)", "higher"),
    ("ssim_gain", "SSIM vs bicubic", "higher"),
]
BOLD_MEANING = ("Bold: the best value of each column and any that ties with it as shown; no bold where all values "
                "tie, nor on NIQE and PIQE (no-reference scores, which reward some artefacts). Bold ranks means only: "
                "whether the best method is told apart from the runner-up is in the Findings, with a paired interval.")


def method_table(summary: pd.DataFrame, method_order: list[str]) -> pd.DataFrame:
    """profile x method, every metric's mean and std, and the difference from bicubic of the mean
    PSNR (dB) and SSIM (a percentage of decibels, a logarithmic unit, would mean nothing)."""
    table = summary.copy()
    for metric, column in (("psnr", "psnr_gain_db"), ("ssim", "ssim_gain")):
        bicubic = table[table["method"] == "bicubic"].set_index("profile")[f"{metric}_mean"]
        table[column] = table[f"{metric}_mean"] - table["profile"].map(bicubic)
    rank = {m: i for i, m in enumerate(method_order)}
    table["order"] = table["method"].map(lambda m: rank.get(m, len(rank)))
    return table.sort_values(["profile", "order"]).drop(columns="order").reset_index(drop=True)


@dataclass
class Marked:
    """A table rendered twice, with the best value of each column in bold (`best_rows`)."""

    html: str
    markdown: str


def markdown_cell(value) -> str:
    """``value`` as the text of one Markdown table cell: a '|' would end the cell, a line break the row."""
    return " ".join(str(value).split()).replace("|", "\\|")


def decimals(column: str) -> int:
    """Decimals a column's values are shown with (of the fraction, for accuracies shown in %)."""
    return 3 if "accuracy" in column else 4 if column.startswith("ssim") else 2


def best_rows(values: pd.Series, better: str | None, places: int) -> set:
    """The rows holding a column's best value as shown (rounded to ``places``), ties included;
    none where ``better`` is None or fewer than two different values are shown (all tie, or one
    row has a value): bold would then single out nothing."""
    if better is None:
        return set()
    shown = values.astype(float).round(places)
    if shown.nunique() < 2:
        return set()
    return set(shown.index[shown == (shown.max() if better == "higher" else shown.min())])


def percent_text(value: float, low: float, high: float, hits: float = np.nan, images: float = np.nan,
                 digits: int = 1) -> str:
    """'80.0 % (4/5) [40.0, 100.0]': an accuracy in %, the images classified right of the class's
    test images where given (hits averaged over seeds: 4.3/5), and its interval where there is one
    (a single test cell gives none)."""
    text = f"{100 * value:.{digits}f} %"
    if not pd.isna(images):
        text += f" ({f'{hits:.1f}'.removesuffix('.0')}/{int(images)})"
    if not pd.isna(low):
        text += f" [{100 * low:.{digits}f}, {100 * high:.{digits}f}]"
    return text


def comparison(table: pd.DataFrame, profile: str, columns=COMPARISON_COLUMNS, std: bool = True,
               labels: tuple[str, ...] = ("method",)) -> Marked:
    """One profile's rows of ``table``, each column of ``columns`` as its value and spread (± std,
    or [low, high] of an interval), accuracies in % with their class's images, text as it is, the
    best value of a column in bold (`best_rows`)."""
    rows = table[table["profile"] == profile].reset_index(drop=True)
    present = [(c, h, better) for c, h, better in columns if c in rows and rows[c].notna().any()]
    bold = {c: best_rows(rows[c], better, decimals(c)) for c, _, better in present}

    def text(i, column):
        value = rows.at[i, column]
        if pd.isna(value):
            return "–"
        if isinstance(value, str):
            return value
        low, high = column.replace("_mean", "_ci_low"), column.replace("_mean", "_ci_high")
        interval = ((rows.at[i, low], rows.at[i, high]) if std and column.endswith("_mean") and low in rows
                    else (np.nan, np.nan))
        if "accuracy" in column:
            metric = column.removesuffix("_mean")
            hits, images = f"{metric}_hits", f"{metric.split('_')[0]}_images"
            return percent_text(value, *interval, *((rows.at[i, hits], rows.at[i, images])
                                                    if hits in rows and images in rows else ()))
        digits, sign = decimals(column), "+" if "gain" in column else ""
        shown = f"{value:{sign}.{digits}f}"
        spread = column.replace("_mean", "_std")
        if std and column.endswith("_mean") and spread in rows and not pd.isna(rows.at[i, spread]):
            return shown + f" ± {rows.at[i, spread]:.{digits}f}"
        if not pd.isna(interval[0]):
            # intervals (bootstrap ones are asymmetric) as [low, high]
            return shown + f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
        return shown

    def html_cell(i, column):
        shown = html.escape(text(i, column))
        return f"<td><b>{shown}</b></td>" if i in bold[column] else f"<td>{shown}</td>"

    def markdown_value(i, column):
        shown = markdown_cell(text(i, column))
        return f"**{shown}**" if i in bold[column] else shown

    headers = list(labels) + [h for _, h, _ in present]
    html_rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(rows.at[i, label]))}</td>" for label in labels)
        + "".join(html_cell(i, c) for c, _, _ in present) + "</tr>"
        for i in rows.index
    )
    page = ('<table class="table"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
            + f"</tr></thead><tbody>{html_rows}</tbody></table>")
    md = ["| " + " | ".join(markdown_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    md += ["| " + " | ".join([markdown_cell(rows.at[i, label]) for label in labels]
                             + [markdown_value(i, c) for c, _, _ in present]) + " |"
           for i in rows.index]
    return Marked(page, "\n".join(md))


CLASSIFICATION_COLUMNS = [
    ("accuracy_mean", "accuracy", "higher"),
    ("accuracy_decoded_mean", "accuracy, cell decoded", "higher"),
    ("macro_f1_mean", "macro-F1", "higher"),
    ("x_accuracy_mean", "X accuracy", "higher"),
    ("y_accuracy_mean", "Y accuracy", "higher"),
    # counts of a few cells, without an interval: no best is named
    ("decoded_sex", "decoded sex correct", None),
]
SEX_CALL_COUNTS = ["cells_known", "calls", "correct", "wrong", "undetermined"]


def with_sex_calls(over_seeds: pd.DataFrame, sex_calls: pd.DataFrame) -> pd.DataFrame:
    """``over_seeds`` with each experiment's decoded-sex counts of
    `karyosr.classify.metrics.sex_call_summary` beside it, as ``sex_<count>`` columns."""
    counts = sex_calls.set_index("experiment")[SEX_CALL_COUNTS].add_prefix("sex_")
    return over_seeds.join(counts, on="experiment")


def sex_call_text(row) -> str:
    """A row's ``sex_`` counts (`with_sex_calls`) as '1 of 3 cells (2 wrong, 0 undetermined)', or
    with several seeds '4 of 9 calls (3 cells × 3 seeds; 5 wrong, 0 undetermined)'."""
    if pd.isna(row["sex_cells_known"]):
        return "–"
    if not row["sex_cells_known"]:
        return "no test cell of known sex"
    counts = f"{row['sex_wrong']:.0f} wrong, {row['sex_undetermined']:.0f} undetermined"
    if row["seeds"] == 1:
        return f"{row['sex_correct']:.0f} of {row['sex_calls']:.0f} cells ({counts})"
    return (f"{row['sex_correct']:.0f} of {row['sex_calls']:.0f} calls ({row['sex_cells_known']:.0f} cells × "
            f"{row['seeds']} seeds; {counts})")


def classification_tables(over_seeds: pd.DataFrame) -> tuple[Marked, Marked]:
    """The network comparison (Super-Xception Table 1 layout) and the ablation (SRAS-net Table 3
    layout: backbone; + SMOTE; + SR; + IAM), each metric as its mean over seeds and [low, high] of
    its interval (`karyosr.classify.metrics.over_seeds`), and the decoded sex's calls where
    `with_sex_calls` added them."""
    table = over_seeds.assign(profile="all", method=over_seeds["experiment"] + " (" + over_seeds["backbone"] + ", "
                              + over_seeds["input"] + ")")
    if "sex_calls" in table:
        table["decoded_sex"] = table.apply(sex_call_text, axis=1)
    networks = comparison(table, "all", CLASSIFICATION_COLUMNS)
    return networks, ablation_table(table)


ABLATION_LABELS = ("backbone", "SMOTE", "SR", "IAM", "input")


def ablation_table(over_seeds: pd.DataFrame) -> Marked:
    """SRAS-net Table 3 layout: a column per component -- backbone, SMOTE (training split
    balanced), SR (two-stage sr: or end-to-end super: input), IAM (the image adaptive crop, from
    the ``adaptive_crop`` column: whether that experiment's images were cut to the chromosome)
    and the HR or LR input -- then the test accuracy with its interval, best in bold."""
    mark = {True: "✓", False: "–"}
    kinds = over_seeds["input"].str.split(":").str[0]
    table = over_seeds.assign(
        profile="all",
        SMOTE=(over_seeds["balance"] == "smote").map(mark),
        SR=np.where(kinds.isin(["sr", "super"]), "✓ (" + kinds + ")", "–"),
        IAM=over_seeds["adaptive_crop"].astype(bool).map(mark),
        input=np.where(kinds == "hr", "HR", "LR"),
    ).reset_index(drop=True)
    return comparison(table, "all", CLASSIFICATION_COLUMNS[:1], labels=ABLATION_LABELS)


def adaptive_crop_applied(cropped: pd.DataFrame) -> bool:
    """Whether crop_filter cut this run's images to their chromosome's box (the IAM), from its
    manifest's ``adaptive_crop`` column; one setting covers a run."""
    settings = set(cropped["adaptive_crop"].astype(bool))
    if len(settings) > 1:
        raise ValueError("crop_filter manifest: adaptive_crop is true for some images and false for others; "
                         "expected one setting for the run (rerun crop_filter)")
    return settings != {False}


def per_class_heatmap(per_class: pd.DataFrame) -> Marked:
    """Classes x experiments test accuracy (SRAS-net Table 4 in one value per pair) with the images
    classified right of the class's test images (averaged over seeds) and its interval, shaded by
    accuracy in HTML: a heat map that keeps its numbers. With cell decoding the decoded accuracy
    follows. Precision and F1 stay in the saved table."""
    experiments = list(dict.fromkeys(per_class["experiment"]))
    table = per_class.set_index(["class", "experiment"])
    # every experiment is tested on the same images, so the first one's support is the class's
    support = per_class.drop_duplicates("class").set_index("class")["support"]

    def text(name, experiment, separator):
        row = table.loc[(name, experiment)]
        if pd.isna(row["accuracy"]):
            return "–", None
        shown = [percent_text(row["accuracy"], row["accuracy_ci_low"], row["accuracy_ci_high"], row["hits"],
                              row["support"], digits=0)]
        if not pd.isna(row.get("accuracy_decoded", np.nan)):
            shown.append("decoded " + percent_text(row["accuracy_decoded"], row["accuracy_decoded_ci_low"],
                                                   row["accuracy_decoded_ci_high"], row["hits_decoded"],
                                                   row["support"], digits=0))
        return separator.join(shown), float(row["accuracy"])

    def html_cell(name, experiment):
        value, shade = text(name, experiment, "<br>")
        if shade is None:
            return f"<td>{value}</td>"
        ink = "#fff" if shade > 0.6 else "#222"
        return f'<td style="background: rgba(31, 119, 180, {shade:.2f}); color: {ink}">{value}</td>'

    headers = ["class (test images)"] + experiments
    labels = {name: f"{name} ({support[name]})" for name in CLASS_NAMES}
    page = ('<table class="table"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
            + "</tr></thead><tbody>"
            + "".join(f"<tr><td>{labels[name]}</td>" + "".join(html_cell(name, e) for e in experiments) + "</tr>"
                      for name in CLASS_NAMES)
            + "</tbody></table>")
    md = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    md += ["| " + " | ".join([labels[name]] + [text(name, e, "; ")[0] for e in experiments]) + " |"
           for name in CLASS_NAMES]
    return Marked(page, "\n".join(md))


def flagged_cells_table(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per test cell flagged in any run (experiment x seed): its chromosome count, decoded
    sex, in how many runs it was flagged, and why: the count, the classes its decoded labels lack
    and the extra copy of a class likelier than a normal karyotype, each with the share of runs giving it."""
    n_runs = len(cells[["experiment", "seed"]].drop_duplicates())

    def tally(items: pd.Series, separator: str) -> list[str]:
        counts = pd.Series([i for text in items if text for i in text.split(separator)]).value_counts()
        return [item if k == n_runs else f"{item} ({k} of {n_runs} runs)" for item, k in counts.items()]

    rows = []
    for cell, group in cells.groupby("cell", sort=True):
        flagged = group[group["flagged"].astype(bool)]
        if flagged.empty:
            continue
        n = int(group["chromosomes"].iloc[0])
        reasons = [] if n == karyotype.NORMAL_CHROMOSOMES else [f"{n} chromosomes (expected 46)"]
        lacking = tally(group["lacking"], ", ")
        reasons += [f"decoded labels lack {', '.join(lacking)}"] if lacking else []
        reasons += [f"extra copy {extra}" for extra in tally(group["extra_copy"], "; ")]
        sexes = group["sex"].value_counts()
        rows.append({"cell": cell, "chromosomes": n,
                     "decoded sex": sexes.index[0] + ("" if len(sexes) == 1 else f" ({sexes.iloc[0]} of {n_runs} runs)"),
                     "flagged in": f"{len(flagged)} of {n_runs} runs", "reasons": "; ".join(reasons)})
    return pd.DataFrame(rows, columns=["cell", "chromosomes", "decoded sex", "flagged in", "reasons"])


def rejected_table(quarantined: pd.DataFrame, rejected: pd.DataFrame) -> pd.DataFrame:
    columns = ["stage", "image_id", "source", "reason"]
    frames = [f[columns] for f in (quarantined, rejected) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


REGISTRATION_COLUMNS = ["slide", "low_magnification", "high_magnification", "cx", "cy", "scale", "rotation_deg",
                        "score", "overlap", "accepted", "reason", "seconds"]


def registration_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """The registration of every pair, rounded for reading: where each view lies in its capture
    (centre in capture pixels, scale of view to capture, rotation), the match score and overlap."""
    table = pairs[REGISTRATION_COLUMNS].copy()
    return table.round({"cx": 1, "cy": 1, "scale": 4, "rotation_deg": 2, "score": 3, "overlap": 3, "seconds": 2})


def rejected_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """Rejected pairs in the report's table of set-aside inputs (stage, image_id, source, reason)."""
    rejected = pairs[~pairs["accepted"].astype(bool)]
    return pd.DataFrame({"stage": "register", "image_id": rejected["high_id"] + " in " + rejected["low_id"],
                         "source": rejected["high_source"], "reason": rejected["reason"]})


def tile_summary(counts: pd.DataFrame) -> pd.DataFrame:
    """Per split: images, tiles cut, kept, dropped as flat, images padded and images that gave no tile."""
    table = counts.assign(no_tile=counts["kept"] == 0).groupby("split", sort=False).agg(
        images=("image_id", "size"), groups=("group", "nunique"), tiles=("tiles", "sum"), kept=("kept", "sum"),
        flat_dropped=("flat", "sum"), padded=("padded", "sum"), without_tiles=("no_tile", "sum"))
    return table.reindex([s for s in ("train", "val", "test") if s in table.index]).reset_index()


REFERENCES = ("bicubic", "lanczos")
GAIN_COLUMNS = ["profile", "method", "versus", "groups", "images", "psnr_gain", "psnr_ci_low", "psnr_ci_high",
                "psnr_fg_gain", "psnr_fg_ci_low", "psnr_fg_ci_high"]


def _clustered(values: pd.Series, groups: pd.Series, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean of per-image values and its bootstrap interval resampling whole groups (slides, patients);
    no interval (NaN) from a single group (`karyosr.classify.metrics.bootstrap_ci`)."""
    values = values.dropna()
    if not len(values):
        return float("nan"), float("nan"), float("nan")
    low, high = bootstrap_ci(values.to_numpy(), n_boot, seed, clusters=groups.reindex(values.index).to_numpy())
    return float(values.mean()), low, high


def gain_table(per_image: pd.DataFrame, groups: pd.Series, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """Every method's PSNR gain over bicubic (MATLAB) and over Lanczos, over the whole tile and inside
    the object, per profile: mean over held-out tiles with a bootstrap interval over groups (tiles of
    one slide or patient share its staining and optics). ``groups`` maps image_id to group."""
    rows = []
    for profile, part in per_image.groupby("profile", sort=False):
        psnr = part.pivot(index="image_id", columns="method", values="psnr")
        inside = part.pivot(index="image_id", columns="method", values="psnr_fg")
        tile_groups = groups.reindex(psnr.index)
        for versus in [r for r in REFERENCES if r in psnr]:
            for method in [m for m in psnr if m != versus]:
                whole = _clustered(psnr[method] - psnr[versus], tile_groups, n_boot, seed)
                fg = _clustered(inside[method] - inside[versus], tile_groups, n_boot, seed)
                rows.append({"profile": profile, "method": method, "versus": versus,
                             "groups": int(tile_groups.nunique()), "images": len(psnr),
                             "psnr_gain": whole[0], "psnr_ci_low": whole[1], "psnr_ci_high": whole[2],
                             "psnr_fg_gain": fg[0], "psnr_fg_ci_low": fg[1], "psnr_fg_ci_high": fg[2]})
    return pd.DataFrame(rows, columns=GAIN_COLUMNS).round(3)


CHANGE_COLUMNS = ["method", "images", "groups", "niqe_change", "niqe_ci_low", "niqe_ci_high", "piqe_change",
                  "piqe_ci_low", "piqe_ci_high"]


def quality_changes(quality: pd.DataFrame, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """Per method, the mean change of NIQE and PIQE of each held-out whole image (after minus
    before: negative is an improvement) with a bootstrap interval over groups; ``quality`` is a
    table of :mod:`karyosr.whole.quality`, its "before" rows those of method ``capture``."""
    rows = []
    for metric in ("niqe", "piqe"):
        table = quality.pivot(index="image_id", columns="method", values=metric)
        groups = quality.drop_duplicates("image_id").set_index("image_id")["group"].reindex(table.index)
        for method in [m for m in table if m != CAPTURE] if CAPTURE in table else []:
            mean, low, high = _clustered(table[method] - table[CAPTURE], groups, n_boot, seed)
            rows.append({"method": method, "metric": metric, "change": mean, "ci_low": low, "ci_high": high,
                         "images": int(table[method].notna().sum()), "groups": int(groups.nunique())})
    if not rows:
        return pd.DataFrame(columns=CHANGE_COLUMNS)
    long = pd.DataFrame(rows)
    wide = long.pivot(index="method", columns="metric", values=["change", "ci_low", "ci_high"])
    wide.columns = [f"{metric}_{stat}" for stat, metric in wide.columns]
    counts = long.drop_duplicates("method").set_index("method")[["images", "groups"]]
    out = counts.join(wide)
    out = out.reindex(list(dict.fromkeys(long["method"]))).reset_index()
    return out[CHANGE_COLUMNS].round(3)


def software_versions() -> pd.DataFrame:
    rows = [("python", platform.python_version())]
    for name in PACKAGES:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    return pd.DataFrame(rows, columns=["package", "version"])


def save_table(table: pd.DataFrame, out_dir, name: str) -> None:
    tables = Path(out_dir) / "tables"
    shards.write_table(tables / f"{name}.parquet", table)
    atomic.write_text(tables / f"{name}.csv", table.to_csv(index=False))
