"""The keys that name a classifier's input (``hr``, ``lr:<profile>``, ``sr:<model>:<profile>``,
``super:<sr_arch>:<profile>``; see karyosr.classify.inputs): parsed in one place for the config
checks, the workflow's rules and the classifiers.

Kept free of torch and OpenCV: the workflow's config validation reads it.
"""

from __future__ import annotations


def parse_input(key: str) -> dict:
    """'sr:srresnet:x4_bicubic' -> {'kind': 'sr', 'model': 'srresnet', 'profile': 'x4_bicubic'}."""
    parts = key.split(":")
    kind = parts[0]
    if kind == "hr" and len(parts) == 1:
        return {"kind": "hr"}
    if kind == "lr" and len(parts) == 2:
        return {"kind": "lr", "profile": parts[1]}
    if kind in ("sr", "super") and len(parts) == 3:
        return {"kind": kind, ("model" if kind == "sr" else "arch"): parts[1], "profile": parts[2]}
    raise ValueError(f"classifier input {key!r}: expected hr, lr:<profile>, sr:<model>:<profile> or "
                     "super:<sr_arch>:<profile>")


def input_slug(key: str) -> str:
    """A path-safe name for an input key."""
    return key.replace(":", "-")
