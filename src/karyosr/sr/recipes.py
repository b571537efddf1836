"""What an SR model trains with when its ``sr.models`` entry leaves a key out: each architecture's
own defaults, applied by config validation where the entry is silent (``ARCH_DEFAULTS``; options
merge key by key, the given ones winning).

Kept free of torch: the workflow's config validation reads it.
"""

from __future__ import annotations

import copy

CENTRED = {"input_shift": "auto"}
ARCH_DEFAULTS: dict[str, dict] = {
    "srcnn": {"options": CENTRED, "lr": 0.002, "warmup_steps": 100},
    "srresnet": {"options": {"num_block": 8, "num_feat": 48, "batch_norm": False, "bicubic_residual": True, **CENTRED},
                 "lr": 0.002, "warmup_steps": 30},
    "rrdbnet": {"options": {"num_feat": 32, "num_block": 3, "num_grow_ch": 16, "bicubic_residual": True, **CENTRED},
                "lr": 0.002, "warmup_steps": 30},
    "srfbn": {"options": {"num_feat": 32, "num_group": 2, "num_step": 2, **CENTRED}, "lr": 0.002, "warmup_steps": 30},
    "unet_sharpen": {"options": {"num_feat": 16, "depth": 3, **CENTRED}, "lr": 0.002, "warmup_steps": 30},
}


def with_arch_defaults(models: list[dict], given: list[set[str]]) -> list[dict]:
    """``models`` (validated ``sr.models`` entries, in order) with their architecture's defaults for
    every key the config did not give (``given``: each entry's keys before the schema filled in its
    own). Only a model trained from scratch takes them: one started from a weights file
    (``init_from``) keeps the published network and input its weights were trained with, and one
    started from another model of the run (``init_from_model``, a GAN fine-tuning) keeps that
    model's network (its options) and its own fine-tuning recipe."""
    out: list[dict] = []
    for model, keys in zip(models, given):
        model = dict(model)
        source = next((m for m in out if m["name"] == model["init_from_model"]), None)
        if source is not None:
            if "options" not in keys:
                model["options"] = copy.deepcopy(source["options"])
        elif not model["init_from"]:
            for key, value in ARCH_DEFAULTS.get(model["arch"], {}).items():
                if key == "options":
                    model[key] = {**copy.deepcopy(value), **model.get(key, {})}
                elif key not in keys:
                    model[key] = copy.deepcopy(value)
        out.append(model)
    return out
