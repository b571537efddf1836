"""Names earlier versions of karyosr used for SR architectures, their options and config sections.

The options follow BasicSR's vocabulary across every architecture (``num_feat``, ``num_block``,
``num_grow_ch``, ...), and ``rrdbnet`` names the PSNR-trained RRDBNet (ESRGAN is its GAN
fine-tuning: a ``gan`` block with ``type: ragan``). A config that still uses an old name is an
error naming the new one (no silent aliases: a config means one thing); a model file written
before the change is read with its names brought up to date, so trained models keep working.

Kept free of torch: the workflow's config validation reads it.
"""

from __future__ import annotations

from typing import Any

ARCHS = {"esrgan": "rrdbnet"}
# Config sections: the whole-image path is called "whole" in its rules, results and modules too.
SECTIONS = {"enhance": "whole"}
OPTIONS = {
    "srresnet": {"num_blocks": "num_block", "num_features": "num_feat"},
    "srfbn": {"num_features": "num_feat", "num_groups": "num_group", "num_steps": "num_step"},
    "unet_sharpen": {"base_channels": "num_feat"},
}


def current_arch(arch: str) -> str:
    return ARCHS.get(arch, arch)


def old_options(arch: str, options: dict[str, Any]) -> dict[str, str]:
    """The keys of ``options`` (of an architecture by its current name) that are old names, with
    their new names."""
    renamed = OPTIONS.get(arch, {})
    return {key: renamed[key] for key in options if key in renamed}


def upgrade_options(arch: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` of a model file written before the renaming, under the current names."""
    renamed = OPTIONS.get(arch, {})
    return {renamed.get(key, key): value for key, value in options.items()}


def upgrade_input(key: str) -> str:
    """A classifier input key of an earlier version ('super:esrgan:x4') under the current names."""
    parts = key.split(":")
    if parts[0] == "super" and len(parts) == 3:
        parts[1] = current_arch(parts[1])
    return ":".join(parts)


def arch_error(arch: str) -> str | None:
    """What to write instead of an old architecture name, or None for a current one."""
    if arch not in ARCHS:
        return None
    return (f"{arch!r} is now {ARCHS[arch]!r} (BasicSR's name for the network; ESRGAN is its GAN fine-tuning: "
            f"arch {ARCHS[arch]} with gan: {{type: ragan, ...}})")
