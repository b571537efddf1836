"""Published SR weights files (BasicSR / Real-ESRGAN ``.pth``, plain state dicts) run as they are.

Such a file holds only tensors, so the network is read from their names and shapes:

* RRDBNet (ESRGAN, Real-ESRGAN's ``RealESRGAN_x4plus``, ``..._anime_6B``): ``body.<i>.rdb1.conv1``
  (or the original ESRGAN repository's ``RRDB_trunk.<i>.RDB1.conv1``); ``num_feat`` from
  ``conv_first``, ``num_block`` from the body's indices, ``num_grow_ch`` from ``rdb1.conv1``, the
  scale from the upsampling convolutions (two: x4, three: x8);
* BasicSR's MSRResNet: ``body.<i>.conv1`` with ``upconv1``; the scale from ``upconv2`` (x4) or
  ``upconv1``'s output channels (``num_feat`` x 4: x2, x 9: x3).

Wrappers (``params_ema``, ``params``) are unwrapped and RGB weights reduced to grey by the same
mapping ``init_from`` uses (:func:`karyosr.sr.archs.fit_published_state`). Other networks
(Real-ESRGAN's SRVGGNetCompact, SwinIR, ...) are refused with the names found.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import nn

from karyosr.model_file import read_state_dict
from karyosr.sr import archs
from karyosr.sr.archs.rrdbnet import rename_legacy_esrgan_keys
from karyosr.weights import apply_state_dict, few

NETWORKS: dict[str, type[nn.Module]] = {"rrdbnet": archs.RRDBNet, "msrresnet": archs.MSRResNet}
_BLOCK_KEY = {"rrdbnet": r"body\.(\d+)\.rdb1\.conv1\.weight", "msrresnet": r"body\.(\d+)\.conv1\.weight"}


def _block_count(state: dict, arch: str) -> int:
    indices = {int(m.group(1)) for key in state if (m := re.fullmatch(_BLOCK_KEY[arch], key))}
    return max(indices) + 1 if indices else 0


def _guess_arch(state: dict, path) -> str:
    for arch in NETWORKS:
        if _block_count(state, arch):
            return arch
    raise ValueError(f"{path}: cannot tell the network from its weights (keys {few(state)}); published RRDBNet "
                     "(ESRGAN, Real-ESRGAN) and MSRResNet (BasicSR) files are recognised; give --arch "
                     f"{' or --arch '.join(NETWORKS)} if it is one of them")


def _scale(state: dict, arch: str, num_feat: int, path) -> int:
    steps = [state[f"conv_up{i}.weight"] for i in (1, 2, 3) if f"conv_up{i}.weight" in state]
    if arch == "rrdbnet":
        scales = {2: 4, 3: 8}
        if len(steps) not in scales:
            raise ValueError(f"{path}: an RRDBNet with {len(steps)} upsampling convolutions (conv_up1..): published "
                             "RRDBNet files have 2 (x4) or 3 (x8); x2 and x3 share one and cannot be told apart")
        return scales[len(steps)]
    if len(steps) == 2:
        return 4
    factor = round((steps[0].shape[0] / num_feat) ** 0.5) if steps else 0
    if factor not in (2, 3):
        raise ValueError(f"{path}: an MSRResNet whose upconv1 has {steps[0].shape[0] if steps else 'no'} output "
                         f"channels for {num_feat} features; published ones have 4x (x2) or 9x (x3), or upconv2 (x4)")
    return factor


def layout(state: dict, path, arch: str | None = None) -> dict:
    """The network of a published state dict: ``arch`` (``rrdbnet`` or ``msrresnet``; inferred from
    the keys unless given), ``scale``, ``options`` (the sizes the class takes) and
    ``input_channels`` of the weights (3 for RGB files, reduced to grey when loaded)."""
    state = rename_legacy_esrgan_keys(state)
    arch = arch or _guess_arch(state, path)
    if arch not in NETWORKS:
        raise ValueError(f"--arch {arch}: expected one of {', '.join(NETWORKS)}")
    blocks = _block_count(state, arch)
    if not blocks or "conv_first.weight" not in state:
        raise ValueError(f"{path}: not a published {arch} file: no conv_first / {_BLOCK_KEY[arch]} keys "
                         f"(keys {few(state)})")
    num_feat, channels = state["conv_first.weight"].shape[:2]
    options = {"num_feat": int(num_feat), "num_block": blocks}
    if arch == "rrdbnet":
        options["num_grow_ch"] = int(state["body.0.rdb1.conv1.weight"].shape[0])
    return {"arch": arch, "scale": _scale(state, arch, int(num_feat), path), "options": options,
            "input_channels": int(channels)}


def load_model(path, arch: str | None = None) -> tuple[nn.Module, dict]:
    """A published weights file as a grey SR model in eval mode, and metadata in the shape of a
    model file's (``kind`` sr, ``name`` the file's stem, ``arch``, ``scale``, ``options``,
    ``description``, ``published`` true, no ``domain``). Errors name the file."""
    state = read_state_dict(path)
    found = layout(state, path, arch)
    model = NETWORKS[found["arch"]](found["scale"], **found["options"])
    apply_state_dict(model, archs.fit_published_state(model, state, path), path)
    colour = " (RGB weights reduced to grey)" if found["input_channels"] == 3 else ""
    meta = {"kind": "sr", "name": Path(path).stem, "published": True, **found,
            "description": f"{archs.describe(model)}, published weights{colour}"}
    return model.eval(), meta
