"""The 24 chromosome classes: label 0-21 for chromosomes 1-22, 22 for X, 23 for Y."""

from __future__ import annotations

CLASS_NAMES = [str(n) for n in range(1, 23)] + ["X", "Y"]
N_CLASSES = len(CLASS_NAMES)

_ALIASES = {"23": 22, "24": 23, "X": 22, "Y": 23}


class LabelError(ValueError):
    pass


def parse_label(text: str) -> int:
    """Map a class as written in file or folder names ('1'..'24', 'X', 'Y', '07') to 0..23."""
    key = str(text).strip().upper()
    if key in _ALIASES:
        return _ALIASES[key]
    if key.isdigit() and 1 <= int(key) <= 22:
        return int(key) - 1
    raise LabelError(f"label {text!r} is not a chromosome class (expected 1-22, X or 23, Y or 24)")
