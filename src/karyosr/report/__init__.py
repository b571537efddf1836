"""The report: tables, findings, figures, the HTML/Markdown page and the comparison viewer."""
