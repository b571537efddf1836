"""Weights of torch modules: torch checkpoints loaded safely (``weights_only``), state dicts unwrapped
and checked, applied to a model with errors that name the file, and trainable parameters counted.

Shared by the SR architectures, the classifier backbones, the training engine and model files
(:func:`karyosr.model_file.read_state_dict` reads any weights file through these).
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_checkpoint(path) -> object:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with clear errors naming the file.

    Raises FileNotFoundError for a missing file and ValueError when the payload is refused by the
    weights-only unpickler (it pickles arbitrary Python objects) or is not a torch file at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        if "Weights only load failed" not in text:
            raise ValueError(f"{path}: not a readable torch weights file (UnpicklingError: {text.strip()})") from exc
        reason = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        raise ValueError(
            f"{path}: refused to load with weights_only=True: the file pickles Python objects beyond tensors"
            " and plain containers, which could run arbitrary code. Re-save only the state dict"
            f" (torch.save(model.state_dict(), path)). Reason: {reason.group(1).strip() if reason else text.strip()[:300]}"
        ) from exc
    except Exception as exc:  # truncated, corrupt or non-torch files raise many types
        raise ValueError(f"{path}: not a readable torch weights file ({type(exc).__name__}: {exc})") from exc


def few(keys, n: int = 5) -> str:
    """The first n of some names, and how many more there are: for error messages."""
    keys = sorted(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def unwrap_state_dict(state_dict: Mapping) -> Mapping:
    """Return the tensors of a checkpoint that may be wrapped as ``{"params_ema": ...}``,
    ``{"params": ...}`` (BasicSR / Real-ESRGAN; ``params_ema`` is preferred when both exist),
    ``{"state_dict": ...}`` or ``{"model": ...}``; a ``module.`` prefix (DataParallel) is stripped."""
    for key in ("params_ema", "params", "state_dict", "model"):
        if isinstance(state_dict, Mapping) and key in state_dict and isinstance(state_dict[key], Mapping):
            state_dict = state_dict[key]
            break
    if state_dict and all(isinstance(k, str) and k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module.") :]: v for k, v in state_dict.items()}
    return state_dict


def state_dict_of(payload, path) -> dict:
    """The tensors of a loaded checkpoint payload, unwrapped; ValueError naming the file otherwise."""
    if not isinstance(payload, Mapping):
        raise ValueError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(payload).__name__}")
    state = dict(unwrap_state_dict(payload))
    not_tensors = [k for k, v in state.items() if not torch.is_tensor(v)]
    if not_tensors:
        raise ValueError(f"{path}: not a state dict; entries that are not tensors: {few(map(str, not_tensors))}")
    return state


def apply_state_dict(model: nn.Module, state: Mapping, path, strict: bool = True, shape_hint: str = "",
                     ignore_prefix: str | None = None) -> nn.Module:
    """Load ``state`` into ``model``: shape mismatches always raise, key mismatches raise unless
    ``strict`` is False (then they are logged), each error naming the file and a few keys.
    Tensors under ``ignore_prefix`` are left as the model has them."""
    expected = model.state_dict()
    if ignore_prefix:
        state = {k: v for k, v in state.items() if not k.startswith(ignore_prefix)}
        expected = {k: v for k, v in expected.items() if not k.startswith(ignore_prefix)}
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if wrong_shape:
        raise ValueError(f"{path}: weights do not fit {type(model).__name__}; shape mismatches: "
                         f"{few(wrong_shape, 3)}{shape_hint}")
    if missing or unexpected:
        message = (
            f"{path}: keys do not match {type(model).__name__}: "
            f"{len(missing)} missing [{few(missing)}], {len(unexpected)} unexpected [{few(unexpected)}]"
        )
        if strict:
            raise ValueError(message)
        log.warning("%s (loaded the rest, strict=False)", message)
    model.load_state_dict(state, strict=False)
    return model
