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

from karyosr import atomic, shards
from karyosr.labels import CLASS_NAMES
from karyosr.split import SPLITS

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


def comparison(table: pd.DataFrame, profile: str, columns=COMPARISON_COLUMNS, std: bool = True) -> Marked:
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
        if std and column.endswith("_mean") and spread in rows and not pd.isna(rows.at[i, spread]):
            text += f" ± {rows.at[i, spread]:.{digits}f}"
        return bold(text) if best[column] == i else text

    headers = ["method"] + [h for _, h, _ in present]
    html_rows = "".join(
        "<tr><td>" + html.escape(rows.at[i, "method"]) + "</td>"
        + "".join(f"<td>{cell(i, c, lambda t: f'<b>{t}</b>')}</td>" for c, _, _ in present) + "</tr>"
        for i in rows.index
    )
    page = ('<table class="table"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
            + f"</tr></thead><tbody>{html_rows}</tbody></table>")
    md = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    md += ["| " + " | ".join([rows.at[i, "method"]] + [cell(i, c, lambda t: f"**{t}**") for c, _, _ in present]) + " |"
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
    plt = pyplot()
    rows = per_image[per_image["profile"] == profile]
    names = [m for m in methods if m in set(rows["method"])] + ["HR"]
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.1 * len(names)) * 2, 4))
    for ax, metric in zip(axes, ("niqe", "piqe")):
        data = [(hr_quality if n == "HR" else rows[rows["method"] == n])[metric].dropna().to_numpy() for n in names]
        ax.boxplot(data, tick_labels=names, showfliers=True)
        ax.set_title(f"{metric.upper()} (lower is better), {profile}")
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
    ("macro_f1_mean", "macro-F1", True),
    ("x_accuracy_mean", "X accuracy", True),
    ("y_accuracy_mean", "Y accuracy", True),
]


def classification_tables(over_seeds: pd.DataFrame) -> tuple[Marked, Marked]:
    """The network comparison (Super-Xception Table 1 layout) and the ablation (SRAS-net Table 3
    layout: backbone; + SMOTE; + SR; + IAM), accuracy as mean ± 95 % CI half-width over seeds."""
    table = over_seeds.copy()
    for column, _, _ in CLASSIFICATION_COLUMNS:
        table[column.replace("_mean", "_std")] = table[column.replace("_mean", "_ci")]
    table = table.assign(profile="all", method=table["experiment"] + " (" + table["backbone"] + ", " + table["input"] + ")")
    networks = comparison(table, "all", CLASSIFICATION_COLUMNS)
    kinds = table["input"].str.split(":").str[0]
    ablation = table.assign(
        method=table["backbone"] + " | SMOTE " + np.where(table["balance"] == "smote", "✓", "–")
        + " | SR " + np.where(kinds.isin(["sr", "super"]), "✓ (" + kinds + ")", "–")
        + " | IAM ✓ | " + np.where(kinds == "hr", "HR input", "LR input"))
    return networks, comparison(ablation, "all", CLASSIFICATION_COLUMNS[:1])


def per_class_table(per_class: pd.DataFrame) -> pd.DataFrame:
    """Class rows, per experiment accuracy / precision / recall / F1 (SRAS-net Table 4 layout)."""
    wide = per_class.pivot(index="class", columns="experiment", values=["accuracy", "precision", "recall", "f1"])
    wide.columns = [f"{experiment} {metric}" for metric, experiment in wide.columns]
    order = list(dict.fromkeys(per_class["experiment"]))
    columns = [f"{e} {m}" for e in order for m in ("accuracy", "precision", "recall", "f1")]
    return wide.reindex(index=CLASS_NAMES, columns=columns).reset_index()


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
        return f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v)

    header = "| " + " | ".join(map(str, table.columns)) + " |"
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


def write_report(out_dir, title: str, sections: list[tuple[str, str, object]], config_text: str) -> None:
    """Write index.html and summary.md from (heading, text, table DataFrame or PNG path) sections."""
    out_dir = Path(out_dir)
    parts_html = [f"<h1>{html.escape(title)}</h1>"]
    parts_md = [f"# {title}"]
    for heading, text, body in sections:
        parts_html.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>")
        parts_md.append(f"## {heading}\n\n{text}")
        if isinstance(body, pd.DataFrame):
            parts_html.append(html_table(body))
            parts_md.append(markdown_table(body))
        elif isinstance(body, Marked):
            parts_html.append(body.html)
            parts_md.append(body.markdown)
        else:
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
