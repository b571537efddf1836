"""report: the comparison report (HTML with embedded figures, Markdown, CSV/Parquet tables)."""

from __future__ import annotations

import base64
import html
import io
import logging
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from karyosr.classify import karyotype, metrics
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


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, png, svg=None) -> None:
    plt = pyplot()
    for path, fmt in ((png, "png"), (svg, "svg")):
        if path:
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=110, metadata={"Date": None} if fmt == "svg" else None)
            atomic.write_bytes(path, buffer.getvalue())
    plt.close(fig)


def quality_boxplots(per_image: pd.DataFrame, hr_quality: pd.DataFrame, profile: str, methods: list[str],
                     out_png, out_svg) -> None:
    """NIQE and PIQE before/after enhancement: a box (quartiles, median, whiskers, outliers) per
    method on this profile's test images, and the HR images for reference."""
    rows = per_image[per_image["profile"] == profile]
    groups = {m: rows[rows["method"] == m] for m in methods if m in set(rows["method"])}
    no_reference_boxplots({**groups, "HR": hr_quality}, profile, out_png, out_svg)


def no_reference_boxplots(groups: dict[str, pd.DataFrame], label: str, out_png, out_svg=None) -> None:
    """A NIQE and a PIQE panel with one box per named table of scores (columns niqe, piqe)."""
    plt = pyplot()
    names = list(groups)
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.1 * len(names)) * 2, 4))
    for ax, metric in zip(axes, ("niqe", "piqe")):
        ax.boxplot([groups[n][metric].dropna().to_numpy() for n in names], tick_labels=names, showfliers=True)
        ax.set_title(f"{metric.upper()} (lower is better), {label}")
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    save_figure(fig, out_png, out_svg)


def training_curves(histories: dict[str, pd.DataFrame], out_png, out_svg=None, metric: str = "val_psnr",
                    metric_title: str = "validation PSNR (dB)") -> None:
    """Training loss and a validation metric per epoch, one line per model; dots mark kept epochs."""
    plt = pyplot()
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(12, 4))
    for name, history in sorted(histories.items()):
        loss = next(c for c in ("train_total", "train_pixel", "train_cross_entropy") if c in history)
        line, = loss_ax.plot(history["epoch"], history[loss], label=name)
        metric_ax.plot(history["epoch"], history[metric], label=name, color=line.get_color())
        best = history[history["best"]]
        metric_ax.plot(best["epoch"], best[metric], "o", color=line.get_color())
    loss_ax.set(title="training loss", xlabel="epoch", yscale="log")
    metric_ax.set(title=f"{metric_title}; dot = epoch kept", xlabel="epoch")
    metric_ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out_png, out_svg)


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


# --------------------------------------------------------------------------- findings


def describe_difference(value: float, low: float, high: float, unit: str, digits: int) -> str:
    """'+1.78 dB (95 % CI +1.70 to +1.86; larger than its uncertainty)': a difference, its interval
    and whether the interval leaves out 0."""
    verdict = ("larger than its uncertainty" if low > 0 or high < 0
               else "the interval includes 0: not a measured difference")
    return (f"{value:+.{digits}f}{unit} ({metrics.LEVEL:.0%} CI {low:+.{digits}f} to {high:+.{digits}f}; "
            f"{verdict})")


def sr_findings(per_image: pd.DataFrame, split: pd.DataFrame, n_boot: int, seed: int = 0) -> list[str]:
    """Per profile, the method with the largest mean PSNR gain over bicubic (inside the chromosome
    where that was scored), with a bootstrap interval of the per-image gains over test cells (the
    images of a cell share its staining and blur)."""
    scored_inside = "psnr_fg" in per_image and per_image["psnr_fg"].notna().any()
    metric, where = ("psnr_fg", " inside the chromosome") if scored_inside else ("psnr", "")
    cells = split.set_index("image_id")["group"]
    lines = []
    for profile, rows in per_image.groupby("profile", sort=False):
        psnr = rows.pivot(index="image_id", columns="method", values=metric)
        if "bicubic" not in psnr or psnr.shape[1] < 2:
            continue
        gains = psnr.drop(columns="bicubic").sub(psnr["bicubic"], axis=0)
        best = gains.mean().idxmax()
        gain = gains[best].dropna()
        low, high = metrics.bootstrap_ci(gain.to_numpy(), n_boot, seed,
                                               clusters=[cells.get(i, i) for i in gain.index])
        lead = (f"{best} gains most over bicubic" if gain.mean() > 0
                else f"no method beats bicubic; the closest is {best}")
        lines.append(f"{profile}: {lead} in PSNR{where}: {psnr[best].mean():.2f} vs {psnr['bicubic'].mean():.2f} dB, "
                     + describe_difference(gain.mean(), low, high, " dB", 2) + ".")
    return lines


SEX_CHROMOSOME_ACCURACY = {"x_accuracy": "X accuracy", "y_accuracy": "Y accuracy"}


def _points(row) -> str:
    return describe_difference(100 * row["difference"], 100 * row["ci_low"], 100 * row["ci_high"], " points", 1)


def classification_findings(comparisons: pd.DataFrame, over_seeds: pd.DataFrame, cells: pd.DataFrame) -> list[str]:
    """Sentences from `karyosr.classify.metrics.comparisons`: the LR-to-HR accuracy gap and what each SR
    route closes of it, SMOTE's effect on X and Y accuracy, and cell decoding's effect and flags.
    A comparison the experiments do not allow is left out."""
    inputs = over_seeds.set_index("experiment")["input"]
    balances = over_seeds.set_index("experiment")["balance"]
    kind = comparisons["comparison"]
    lines = []
    gaps = comparisons[kind == "lr_to_hr_gap"].set_index("baseline")
    routes = comparisons[kind == "sr_route"]
    for lr, group in routes.groupby("baseline", sort=False):
        gap = gaps.loc[lr] if lr in gaps.index else None
        gap_closed = gap is not None and gap["ci_low"] > 0
        text = (f"LR-to-HR accuracy gap ({gap['experiment']} vs {lr}): {gap['experiment_value']:.1%} vs "
                f"{gap['baseline_value']:.1%}, {_points(gap)}. " if gap is not None
                else f"SR routes vs the LR input {lr} (no HR experiment to measure a gap): ")
        text += "; ".join(
            f"{row['experiment']} ({inputs[row['experiment']]}) "
            + (f"closes {row['share_of_gap']:.0%} of it, " if gap_closed else "")
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
        flagged = cells.loc[cells["flagged"].astype(bool), "cell"].nunique()
        lines.append(text + f" {flagged} of {cells['cell'].nunique()} test cells are flagged as possible numerical "
                     "abnormalities in at least one run (table 'Classification: flagged cells').")
    return lines


def rejected_table(quarantined: pd.DataFrame, rejected: pd.DataFrame) -> pd.DataFrame:
    columns = ["stage", "image_id", "source", "reason"]
    frames = [f[columns] for f in (quarantined, rejected) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def pick_samples(split: pd.DataFrame, n: int) -> list[str]:
    """A fixed, class-spread choice of test images: the same ones in every run."""
    test = split[split["split"] == "test"].sort_values(["label", "image_id"])
    # One image per class in turn (first of each class, then second, ...), classes spread evenly.
    rank = test.groupby("label").cumcount()
    ordered = test.assign(rank=rank).sort_values(["rank", "label", "image_id"], kind="stable")
    first_round = ordered[ordered["rank"] == 0]
    if len(first_round) > n:
        keep = np.linspace(0, len(first_round) - 1, num=n).round().astype(int)
        return list(first_round["image_id"].iloc[keep])
    return list(ordered["image_id"].iloc[:n])


def load_images(paths, ids: list[str]) -> dict[str, np.ndarray]:
    wanted, found = set(ids), {}
    for path in paths:
        meta = shards.read_shard_meta(path)
        if not wanted.intersection(meta["image_id"]):
            continue
        meta, images = shards.read_shard(path)
        found.update({i: im for i, im in zip(meta["image_id"], images) if i in wanted})
    return found


def sample_grid(ids, hr: dict, lr: dict, sr: dict[str, dict], title: str, out_png) -> None:
    """Rows: sample images; columns: LR (pixel-replicated), each SR method, HR. Each panel has a
    2x zoomed inset of the chromosome's centre, where bands and centromere decide the class."""
    plt = pyplot()
    columns = [("LR", lr)] + [(m, imgs) for m, imgs in sr.items()] + [("HR", hr)]
    fig, axes = plt.subplots(len(ids), len(columns), figsize=(1.6 * len(columns), 1.6 * len(ids)), squeeze=False)
    for r, image_id in enumerate(ids):
        for c, (name, images) in enumerate(columns):
            ax = axes[r][c]
            image = images[image_id]
            peak = 65535 if image.dtype == np.uint16 else 255
            ax.imshow(image, cmap="gray", vmin=0, vmax=peak, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            h, w = image.shape
            if min(h, w) < 16:
                continue
            inset = ax.inset_axes([0.62, 0.62, 0.38, 0.38])
            inset.imshow(image[h // 2 - h // 8 : h // 2 + h // 8, w // 2 - w // 8 : w // 2 + w // 8],
                         cmap="gray", vmin=0, vmax=peak, interpolation="nearest")
            inset.set_xticks([])
            inset.set_yticks([])
            for spine in inset.spines.values():
                spine.set_edgecolor("orange")
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(image_id.split("/")[-1], fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, out_png)


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    def cell(v):
        return f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else markdown_cell(v)

    header = "| " + " | ".join(map(markdown_cell, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def html_table(table: pd.DataFrame, digits: int = 3) -> str:
    return table.to_html(index=False, float_format=lambda v: f"{v:.{digits}f}", border=0, classes="table")


def software_versions() -> pd.DataFrame:
    rows = [("python", platform.python_version())]
    for name in PACKAGES:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    return pd.DataFrame(rows, columns=["package", "version"])


def _embed_png(path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table.table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
table.table th, table.table td { padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: right; }
table.table th { background: #f3f3f3; }
img { max-width: 100%; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.8em; }
"""


def write_report(out_dir, title: str, sections: list[tuple[str, str, object]], config_text: str,
                 links: list[tuple[str, str]] = ()) -> None:
    """Write index.html and summary.md from (heading, text, body) sections; a body is a table
    (DataFrame or Marked), a PNG path, a list of sentences (a bullet list) or None (text only).
    ``links`` are (text, relative URL) pairs listed under the title (pages beside the report)."""
    out_dir = Path(out_dir)
    parts_html = [f"<h1>{html.escape(title)}</h1>"]
    parts_md = [f"# {title}"]
    if links:
        parts_html.append("<p class='links'>" + " · ".join(
            f"<a href=\"{html.escape(url, quote=True)}\">{html.escape(text)}</a>" for text, url in links) + "</p>")
        parts_md.append(" · ".join(f"[{text}]({url})" for text, url in links))
    for heading, text, body in sections:
        parts_html.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>")
        parts_md.append(f"## {heading}\n\n{text}")
        if isinstance(body, pd.DataFrame):
            parts_html.append(html_table(body))
            parts_md.append(markdown_table(body))
        elif isinstance(body, Marked):
            parts_html.append(body.html)
            parts_md.append(body.markdown)
        elif isinstance(body, list):
            parts_html.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in body) + "</ul>")
            parts_md.append("\n".join(f"- {line}" for line in body))
        elif body is not None:
            parts_html.append(_embed_png(body))
            parts_md.append(f"![{heading}]({Path(body).name})")
    parts_html.append(f"<h2>Configuration</h2><pre>{html.escape(config_text)}</pre>")
    parts_md.append(f"## Configuration\n\n```yaml\n{config_text.rstrip()}\n```")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts_html)}</body></html>\n")
    atomic.write_text(out_dir / "index.html", page)
    atomic.write_text(out_dir / "summary.md", "\n\n".join(parts_md) + "\n")


def save_table(table: pd.DataFrame, out_dir, name: str) -> None:
    tables = Path(out_dir) / "tables"
    shards.write_table(tables / f"{name}.parquet", table)
    atomic.write_text(tables / f"{name}.csv", table.to_csv(index=False))
