"""Small helpers shared by the architecture files (no layers live here)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def check_scale(cls_name: str, scale, supported) -> int:
    """Return ``scale`` as an int, or raise ValueError naming the supported factors."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in supported:
        raise ValueError(f"{cls_name}: unsupported scale {scale!r}; supported scales: {sorted(supported)}")
    return int(scale)


def bicubic_up(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling to exactly ``scale`` times the input size (works at odd sizes)."""
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(h * scale, w * scale), mode="bicubic", align_corners=False)


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
