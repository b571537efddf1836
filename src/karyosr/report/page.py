"""The report page: index.html (tables and embedded figures) and summary.md from its sections."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from karyosr.io import atomic
from karyosr.report.tables import Marked, markdown_cell


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    def cell(v):
        return f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else markdown_cell(v)

    header = "| " + " | ".join(map(markdown_cell, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def html_table(table: pd.DataFrame, digits: int = 3) -> str:
    return table.to_html(index=False, float_format=lambda v: f"{v:.{digits}f}", border=0, classes="table")


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
