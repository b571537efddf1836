"""What an SR model trains with when its ``sr.models`` entry leaves a key out: each architecture's
CPU size and the recipe measured for it at equal CPU time.

The architectures' own sizes (SRResNet 16 x 64 and RRDBNet 23 x 64 as published, SRFBN 32 wide
with 3 groups and 4 steps, the U-Net 32 wide) with the schema's BasicSR learning rate (2e-4) and a
raw input fell 2.7 to 8.4 dB short of the reference below after 3 CPU-minutes on the G-band x4
crops, SRResNet (-0.6 dB) and RRDBNet (-2.6 dB, 65 steps) below bicubic itself
(benchmarks/results/sr_equal_time_defaults_before.md). A model trained from scratch
therefore gets, where its entry is silent: the input centred on the training images' mean grey
(``input_shift: auto``), a bicubic skip where the network has none (named a variant by
``archs.describe``), no BatchNorm in SRResNet (the MSRResNet-style variant), a size that trains
hundreds of steps in minutes on a core, and lr 2e-3 after a short warm-up. Against the benchmark's
own plain residual CNN trained for the same 3 minutes (+5.77 dB over MATLAB bicubic inside the
chromosome; benchmarks/results/sr_equal_time.md, 416 test crops of 10 cells):

* SRResNet 8 x 48: -0.16 dB; RRDBNet 3 x 32 (growth 16): -0.12; U-Net 16 wide: -0.16; SRFBN 32
  wide, 2 groups, 2 steps: -0.36 (3 steps: -0.82, fewer steps in the time).
* SRCNN (its published layers, centred): -1.26 dB; it is at its capacity, not short of time: twice
  the steps on 32 px patches gave the same PSNR (benchmarks/results/sr_equal_time_round2.md), and
  8.5 minutes +4.93 dB, 0.84 dB under the reference's 3-minute result.

``options`` merge key by key, the given ones winning: ``num_block: 16, num_feat: 64,
batch_norm: true, bicubic_residual: false, input_shift: 0`` is the published SRResNet.

Kept free of torch: the workflow's config validation reads it.
"""

from __future__ import annotations

import copy

from karyosr.defaults import where_silent

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
            model = where_silent(model, keys, ARCH_DEFAULTS[model["arch"]], "options")
        out.append(model)
    return out
