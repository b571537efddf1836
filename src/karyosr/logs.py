"""Logging set-up shared by the workflow scripts: to the rule's log file and to stderr."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

# OpenCV's TIFF reader warns on every private tag of common microscope files; the warnings
# would bury the workflow's own log lines.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


def setup(log_path: str | os.PathLike | None = None, level: int = logging.INFO) -> logging.Logger:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    return logging.getLogger("karyosr")
