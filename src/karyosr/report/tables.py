"""The report's tables: images per stage and class, the SR method and classification comparisons
(best value in bold, as HTML and Markdown), the per-class heat map, flagged cells, rejected inputs and
software versions; each saved as CSV and Parquet beside the page."""

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
from karyosr.dataset.split import SPLITS
from karyosr.io import atomic, shards
from karyosr.labels import CLASS_NAMES

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
    # (summary column, heading, higher is better)
    ("psnr_mean", "PSNR (dB)", True),
    ("ssim_mean", "SSIM", True),
    ("psnr_fg_mean", "PSNR fg (dB)", True),
    ("ssim_fg_mean", "SSIM fg", True),
    ("mse_mean", "MSE", False),
    ("mse_fg_mean", "MSE fg", False),
    ("niqe_mean", "NIQE", False),
    ("piqe_mean", "PIQE", False),
    ("psnr_gain_pct", "PSNR vs bicubic (%)", True),
    ("ssim_gain_pct", "SSIM vs bicubic (%)", True),
]


def method_table(summary: pd.DataFrame, method_order: list[str]) -> pd.DataFrame:
    """profile x method, every metric's mean and std, and the % change over bicubic of PSNR and
    SSIM (the layout of the MRI super-resolution study's tables)."""
    table = summary.copy()
    for metric in ("psnr", "ssim"):
        bicubic = table[table["method"] == "bicubic"].set_index("profile")[f"{metric}_mean"]
        reference = table["profile"].map(bicubic)
        table[f"{metric}_gain_pct"] = 100.0 * (table[f"{metric}_mean"] - reference) / reference
    rank = {m: i for i, m in enumerate(method_order)}
    table["order"] = table["method"].map(lambda m: rank.get(m, len(rank)))
    return table.sort_values(["profile", "order"]).drop(columns="order").reset_index(drop=True)


@dataclass
class Marked:
    """A table rendered twice, with the best value of each column in bold."""

    html: str
    markdown: str


def markdown_cell(value) -> str:
    """``value`` as the text of one Markdown table cell: a '|' would end the cell, a line break the row."""
    return " ".join(str(value).split()).replace("|", "\\|")


def comparison(table: pd.DataFrame, profile: str, columns=COMPARISON_COLUMNS, std: bool = True,
               labels: tuple[str, ...] = ("method",)) -> Marked:
    rows = table[table["profile"] == profile].reset_index(drop=True)
    present = [(c, h, up) for c, h, up in columns if c in rows and rows[c].notna().any()]
    best = {c: (rows[c].idxmax() if up else rows[c].idxmin()) for c, _, up in present}

    def cell(i, column, bold):
        value = rows.at[i, column]
        if pd.isna(value):
            return "–"
        digits = 4 if "ssim" in column and "pct" not in column else 2
        text = f"{value:.{digits}f}"
        spread = column.replace("_mean", "_std")
        low, high = column.replace("_mean", "_ci_low"), column.replace("_mean", "_ci_high")
        if std and column.endswith("_mean") and spread in rows and not pd.isna(rows.at[i, spread]):
            text += f" ± {rows.at[i, spread]:.{digits}f}"
        elif std and column.endswith("_mean") and low in rows and not pd.isna(rows.at[i, low]):
            # intervals (bootstrap ones are asymmetric) as [low, high]
            text += f" [{rows.at[i, low]:.{digits}f}, {rows.at[i, high]:.{digits}f}]"
        return bold(text) if best[column] == i else text

    headers = list(labels) + [h for _, h, _ in present]
    html_rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(rows.at[i, label]))}</td>" for label in labels)
        + "".join(f"<td>{cell(i, c, lambda t: f'<b>{t}</b>')}</td>" for c, _, _ in present) + "</tr>"
        for i in rows.index
    )
    page = ('<table class="table"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
            + f"</tr></thead><tbody>{html_rows}</tbody></table>")
    md = ["| " + " | ".join(markdown_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    md += ["| " + " | ".join([markdown_cell(rows.at[i, label]) for label in labels]
                             + [cell(i, c, lambda t: f"**{t}**") for c, _, _ in present]) + " |"
           for i in rows.index]
    return Marked(page, "\n".join(md))


CLASSIFICATION_COLUMNS = [
    ("accuracy_mean", "accuracy", True),
    ("accuracy_decoded_mean", "accuracy, cell decoded", True),
    ("macro_f1_mean", "macro-F1", True),
    ("x_accuracy_mean", "X accuracy", True),
    ("y_accuracy_mean", "Y accuracy", True),
]


def classification_tables(over_seeds: pd.DataFrame) -> tuple[Marked, Marked]:
    """The network comparison (Super-Xception Table 1 layout) and the ablation (SRAS-net Table 3
    layout: backbone; + SMOTE; + SR; + IAM), each metric as its mean over seeds and [low, high] of
    its interval (`karyosr.classify.metrics.over_seeds`)."""
    table = over_seeds.assign(profile="all", method=over_seeds["experiment"] + " (" + over_seeds["backbone"] + ", "
                              + over_seeds["input"] + ")")
    networks = comparison(table, "all", CLASSIFICATION_COLUMNS)
    return networks, ablation_table(table)


ABLATION_LABELS = ("backbone", "SMOTE", "SR", "IAM", "input")


def ablation_table(over_seeds: pd.DataFrame) -> Marked:
    """SRAS-net Table 3 layout: a column per component -- backbone, SMOTE (training split
    balanced), SR (two-stage sr: or end-to-end super: input), IAM (the image adaptive crop, from
    the ``adaptive_crop`` column: whether that experiment's images were cut to the chromosome)
    and the HR or LR input -- then the test accuracy, best in bold."""
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
    """Classes x experiments test accuracy (SRAS-net Table 4 in one value per pair), shaded by
    accuracy in HTML: a heat map that keeps its numbers. With cell decoding the decoded accuracy
    follows in brackets. Precision and F1 stay in the saved table."""
    experiments = list(dict.fromkeys(per_class["experiment"]))
    table = per_class.set_index(["class", "experiment"])
    # every experiment is tested on the same images, so the first one's support is the class's
    support = per_class.drop_duplicates("class").set_index("class")["support"]

    def text(name, experiment):
        row = table.loc[(name, experiment)]
        if pd.isna(row["accuracy"]):
            return "–", None
        decoded = f" ({row['accuracy_decoded']:.2f})" if not pd.isna(row.get("accuracy_decoded", np.nan)) else ""
        return f"{row['accuracy']:.2f}{decoded}", float(row["accuracy"])

    def html_cell(name, experiment):
        value, shade = text(name, experiment)
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
    md += ["| " + " | ".join([labels[name]] + [text(name, e)[0] for e in experiments]) + " |" for name in CLASS_NAMES]
    return Marked(page, "\n".join(md))


def flagged_cells_table(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per test cell flagged in any run (experiment x seed): its chromosome count, decoded
    sex, in how many runs it was flagged, and why: the count, the classes its decoded labels lack
    and the classes with too many confident predictions, each with the share of runs giving it."""
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
        reasons += tally(group["excess"], "; ")
        sexes = group["sex"].value_counts()
        rows.append({"cell": cell, "chromosomes": n,
                     "decoded sex": sexes.index[0] + ("" if len(sexes) == 1 else f" ({sexes.iloc[0]} of {n_runs} runs)"),
                     "flagged in": f"{len(flagged)} of {n_runs} runs", "reasons": "; ".join(reasons)})
    return pd.DataFrame(rows, columns=["cell", "chromosomes", "decoded sex", "flagged in", "reasons"])


def rejected_table(quarantined: pd.DataFrame, rejected: pd.DataFrame) -> pd.DataFrame:
    columns = ["stage", "image_id", "source", "reason"]
    frames = [f[columns] for f in (quarantined, rejected) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


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
