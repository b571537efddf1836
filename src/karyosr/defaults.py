"""Defaults of a config list entry that apply only where the entry is silent: each backbone's
(karyosr.classify.recipes) and each SR architecture's (karyosr.sr.recipes).

Kept free of torch: the workflow's config validation reads it.
"""

from __future__ import annotations

import copy


def where_silent(entry: dict, given: set[str], defaults: dict, merged: str) -> dict:
    """``entry`` with ``defaults`` for every key the config did not give (``given``: the entry's
    keys before the schema filled in its own defaults); the ``merged`` key's mapping (the network's
    options) merges key by key, the given ones winning."""
    out = dict(entry)
    for key, value in defaults.items():
        if key == merged:
            out[key] = {**copy.deepcopy(value), **entry.get(key, {})}
        elif key not in given:
            out[key] = copy.deepcopy(value)
    return out
