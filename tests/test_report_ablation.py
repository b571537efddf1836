"""The report's ablation table (SRAS-net Table 3 layout) and the Markdown validity of summary.md."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from karyosr.report import page, tables


def _over_seeds(adaptive_crop: bool) -> pd.DataFrame:
    return pd.DataFrame({
        "experiment": ["hr_smote", "lr_none", "sr_smote", "super_smote"],
        "backbone": "resnet18",
        "input": ["hr", "lr:x4_bicubic", "sr:srresnet:x4_bicubic", "super:srcnn:x4_bicubic"],
        "balance": ["smote", "none", "smote", "smote"],
        "accuracy_mean": [0.9, 0.5, 0.7, 0.6],
        "adaptive_crop": adaptive_crop,
    })


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row: split on '|' that is not escaped, outer pipes dropped."""
    assert line.startswith("|") and line.endswith("|") and not line.endswith("\\|"), line
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line[1:-1])]


def _tables(markdown: str) -> list[list[str]]:
    """Every block of consecutive lines starting with '|'."""
    blocks, current = [], []
    for line in markdown.split("\n") + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    return blocks


def _assert_valid_table(lines: list[str]) -> list[list[str]]:
    """Header, a separator row of dashes, then rows with as many cells as the header."""
    header = _cells(lines[0])
    assert len(lines) >= 2 and all(re.fullmatch(r":?-{3,}:?", c) for c in _cells(lines[1])), lines[:2]
    rows = [_cells(line) for line in lines[2:]]
    assert all(len(row) == len(header) for row in [_cells(lines[1])] + rows), lines
    return [header] + rows


@pytest.mark.parametrize("adaptive_crop, mark", [(True, "✓"), (False, "–")])
def test_ablation_table_is_valid_markdown_with_the_iam_of_the_run(adaptive_crop, mark):
    table = tables.ablation_table(_over_seeds(adaptive_crop))
    header, *rows = _assert_valid_table(table.markdown.split("\n"))
    assert header == ["backbone", "SMOTE", "SR", "IAM", "input", "accuracy"]
    assert [row[:5] for row in rows] == [
        ["resnet18", "✓", "–", mark, "HR"],
        ["resnet18", "–", "–", mark, "LR"],
        ["resnet18", "✓", "✓ (sr)", mark, "LR"],
        ["resnet18", "✓", "✓ (super)", mark, "LR"],
    ]
    assert rows[0][5] == "**90.0 %**" and rows[1][5] == "50.0 %"
    # The HTML table has the same columns.
    assert table.html.count("<th>") == 6 and table.html.count("<tr>") == 5
    assert table.html.count(f"<td>{mark}</td>") >= 4


def test_ablation_iam_follows_each_row():
    rows = pd.concat([_over_seeds(True).iloc[:2], _over_seeds(False).iloc[2:]], ignore_index=True)
    _, *cells = _assert_valid_table(tables.ablation_table(rows).markdown.split("\n"))
    assert [row[3] for row in cells] == ["✓", "✓", "–", "–"]


def test_adaptive_crop_applied_reads_the_crop_filter_manifest():
    assert tables.adaptive_crop_applied(pd.DataFrame({"adaptive_crop": [True, True]}))
    assert not tables.adaptive_crop_applied(pd.DataFrame({"adaptive_crop": [False, False]}))
    with pytest.raises(ValueError, match="adaptive_crop is true for some images and false for others"):
        tables.adaptive_crop_applied(pd.DataFrame({"adaptive_crop": [True, False]}))


def test_summary_md_tables_are_valid_markdown(tmp_path):
    # A cell holding '|' or a line break (a rejection reason, a method name) must not split it.
    odd = pd.DataFrame({"stage": ["crop_filter"], "reason": ["a | b\nsecond line"], "n": [np.float64(1.5)]})
    methods = pd.DataFrame({"profile": "x4", "method": ["bicubic", "edsr|x4"], "psnr_mean": [30.0, 31.0]})
    sections = [
        ("Classification: ablation", "text", tables.ablation_table(_over_seeds(False))),
        ("Methods", "text", tables.comparison(methods, "x4")),
        ("Rejected", "text", odd),
    ]
    page.write_report(tmp_path, "t", sections, "a: 1\n")
    markdown_tables = _tables((tmp_path / "summary.md").read_text())
    assert len(markdown_tables) == 3
    parsed = [_assert_valid_table(lines) for lines in markdown_tables]
    assert parsed[1][2][0] == "edsr\\|x4"
    assert parsed[2][1] == ["crop_filter", "a \\| b second line", "1.500"]
