"""The rule scripts' logging: the error that stops a job lands in the rule's log file."""

from __future__ import annotations

import subprocess
import sys


def test_uncaught_error_is_written_to_the_log_file_and_stderr(tmp_path):
    log = tmp_path / "logs" / "split.log"
    code = f"from karyosr import logs; logs.setup({str(log)!r}); raise ValueError(\"split 'val' is empty\")"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "split 'val' is empty" in result.stderr
    text = log.read_text()
    assert "ValueError: split 'val' is empty" in text and "Traceback" in text
