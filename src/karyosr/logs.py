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
    logger = logging.getLogger("karyosr")

    # The error that stops a job belongs in the rule's log too: on a cluster that file is where
    # people look, and Snakemake's own stderr may be on another machine.
    def log_uncaught(kind, value, trace):
        logger.error("%s: %s", kind.__name__, value, exc_info=(kind, value, trace))

    sys.excepthook = log_uncaught
    return logger
