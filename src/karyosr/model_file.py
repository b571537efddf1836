"""Model files: safetensors weights plus a JSON block that says what the model is.

Every model the workflow exports (SR models, classifiers and super-networks, the perceptual
feature network) is a ``model.safetensors`` file. Its weights are plain tensors, and its
safetensors header carries one metadata entry, ``karyosr``, holding a JSON object:

* always: ``format`` (``karyosr-model``), ``format_version``, ``kind`` (``sr``, ``classifier``
  or ``features``), ``karyosr_version``, ``name``, ``input_channels``, ``bit_depth`` and ``peak``
  of the training images, ``config_hash`` (the training rule's config fingerprint, the same one
  its resume checkpoint carries), ``best_epoch`` and ``validation`` (the validation metrics of
  the exported epoch), ``crop`` (the crop_filter settings, i.e. the polarity, threshold and size
  of the crops the model was trained on);
* SR models and classifiers: ``domain``, the grey-level statistics of the training images the
  model takes as input (LR images for SR models, the classifier's input crops, without SMOTE's
  synthetic ones; :func:`karyosr.domain.domain_record`): median and p05/p95 of the per-image
  ``mean_grey``, ``grey_spread`` and ``background`` as fractions of the peak, ``polarity`` and
  ``polarity_share``, ``bit_depth``, ``image_count``, ``dataset`` and ``pixel_size_um`` (None
  when unknown). ``karyosr enhance`` / ``classify`` refuse images outside it unless ``--force``;
  files written before it have none and are not checked;
* SR models: ``arch``, ``scale``, ``options`` (with ``input_shift: auto`` resolved),
  ``description``, ``profile`` (the degradation profile trained on) and ``training`` (the
  model's config entry);
* classifiers: ``backbone``, ``input`` (``hr``, ``lr:<profile>``, ``sr:<model>:<profile>``,
  ``super:<arch>:<profile>``), ``scale`` (None for ``hr``), ``input_size`` (the network's input
  images), ``class_names``, ``tta``, ``profile`` and ``experiment`` (its config entry, from which
  the network is rebuilt);
* the feature network: ``channels``, ``num_classes``, ``class_names``.

Reading never unpickles: safetensors files are parsed as tensors and JSON. ``.pt`` files
written before this format (and public BasicSR / ESRGAN ``.pth`` files) still load through the
``weights_only`` torch loader (:func:`karyosr.weights.load_checkpoint`); for them the
metadata is what the old payload held (``legacy: true``).

safetensors and torch are imported where they are used, so reading a safetensors file's
metadata (:func:`read_metadata`) does not load torch.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from karyosr import __version__, renames
from karyosr.io.atomic import atomic_path

FORMAT = "karyosr-model"
FORMAT_VERSION = 1
METADATA_KEY = "karyosr"
KINDS = ("sr", "classifier", "features")
SUFFIX = ".safetensors"
# A safetensors file starts with the header length (u64, little endian) and a JSON header; no
# torch file (a zip archive, or a legacy pickle starting with 0x80) has '{' at byte 8.
_MAX_HEADER = 100_000_000


@dataclass
class ModelFile:
    path: Path
    state_dict: dict  # name -> torch.Tensor
    metadata: dict  # the JSON block ({} for a weights file without one)


def is_safetensors(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a safetensors file, judged by its first bytes, not its name."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
            size = os.fstat(handle.fileno()).st_size
    except OSError:
        return False
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < length <= min(size - 8, _MAX_HEADER)


def _plain(value: Any) -> Any:
    """JSON's fallback for numpy scalars and paths; anything else is a bug in the caller."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"model metadata: {type(value).__name__} value {value!r} is not JSON")


def save(path: str | os.PathLike, state_dict: dict, metadata: dict) -> None:
    """Write ``state_dict`` and ``metadata`` (a JSON-able dict with a ``kind``) atomically.

    ``format``, ``format_version`` and ``karyosr_version`` are added to the metadata.
    """
    from safetensors.torch import save as save_bytes

    kind = metadata.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{path}: model metadata kind {kind!r}; expected one of {', '.join(KINDS)}")
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, "karyosr_version": __version__, **metadata}
    text = json.dumps(full, sort_keys=True, default=_plain, allow_nan=True)
    # Copies: safetensors refuses tensors sharing storage and needs contiguous CPU memory.
    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in state_dict.items()}
    data = save_bytes(tensors, metadata={METADATA_KEY: text})
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _safetensors_metadata(path: Path) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="numpy") as handle:
            text = (handle.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc
    if text is None:
        return {}
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: the {METADATA_KEY!r} metadata entry is not JSON ({exc})") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: the {METADATA_KEY!r} metadata entry is not a {FORMAT} block")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: model format version {metadata['format_version']} is newer than this karyosr "
                         f"({__version__}) reads (version {FORMAT_VERSION}); upgrade karyosr")
    return metadata


def legacy_metadata(payload: Any) -> dict:
    """What a ``.pt`` payload written before model files carried metadata says about its model."""
    if not isinstance(payload, dict) or "state_dict" not in payload:
        return {}
    common = {"legacy": True, "best_epoch": payload.get("best_epoch")}
    if "arch" in payload:
        return {**common, "kind": "sr", "arch": payload["arch"], "scale": int(payload["scale"]),
                "options": dict(payload.get("options", {})), "description": payload.get("description")}
    if "channels" in payload:
        return {**common, "kind": "features", "channels": list(payload["channels"]),
                "num_classes": int(payload["num_classes"])}
    # Classifier files held only their weights: the architecture was in the workflow's config.
    return {**common, "kind": "classifier"}


def _require_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")


def current_names(metadata: dict) -> dict:
    """``metadata`` with the architecture and option names of an earlier version brought up to
    date (karyosr.renames), so models trained before the renaming still load and rebuild."""
    out = dict(metadata)
    if out.get("kind") == "sr" and "arch" in out:
        out["arch"] = renames.current_arch(out["arch"])
        out["options"] = renames.upgrade_options(out["arch"], out.get("options") or {})
    if out.get("kind") == "classifier" and isinstance(out.get("input"), str):
        out["input"] = renames.upgrade_input(out["input"])
        experiment = out.get("experiment")
        if isinstance(experiment, dict) and out["input"].startswith("super:"):
            arch = out["input"].split(":")[1]
            out["experiment"] = {**experiment, "input": out["input"],
                                 "sr_options": renames.upgrade_options(arch, experiment.get("sr_options") or {})}
    return out


def read_metadata(path: str | os.PathLike) -> dict:
    """A model file's metadata; for safetensors files without loading torch or any tensor."""
    path = Path(path)
    _require_file(path)
    if is_safetensors(path):
        return current_names(_safetensors_metadata(path))
    return load(path).metadata


def load(path: str | os.PathLike) -> ModelFile:
    """A model file's tensors and metadata. Nothing is unpickled: safetensors files are read as
    tensors and JSON, other files through the ``weights_only`` torch loader. Errors name the file."""
    from karyosr.weights import load_checkpoint, state_dict_of

    path = Path(path)
    _require_file(path)
    if not is_safetensors(path):
        payload = load_checkpoint(path)
        return ModelFile(path, state_dict_of(payload, path), current_names(legacy_metadata(payload)))
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    metadata = _safetensors_metadata(path)
    try:
        state = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc
    return ModelFile(path, dict(state), current_names(metadata))


def read_state_dict(path) -> dict:
    """A weights file's tensors, loaded safely and unwrapped: a safetensors file (a karyosr
    ``model.safetensors`` or any other) or a torch file through :func:`karyosr.weights.load_checkpoint`."""
    return load(path).state_dict


def require_kind(loaded: ModelFile, kind: str) -> dict:
    """The metadata of a model file that must be of ``kind``; ValueError naming the file otherwise."""
    found = loaded.metadata.get("kind")
    if found is None:
        raise ValueError(f"{loaded.path}: no karyosr metadata (a bare weights file?); expected a {kind} model file "
                         "written by the workflow (model.safetensors)")
    if found != kind:
        raise ValueError(f"{loaded.path}: is a {found!r} model file, not a {kind!r} one")
    return loaded.metadata


def training_summary(result) -> dict:
    """``best_epoch`` and the validation metrics of that epoch from an engine FitResult."""
    history = result.history
    validation = {}
    if len(history) and "epoch" in history:
        rows = history[history["epoch"] == result.best_epoch]
        if len(rows):
            row = rows.iloc[-1]
            validation = {k: float(row[k]) for k in history.columns if k.startswith("val_")}
    return {"best_epoch": int(result.best_epoch), "validation": validation}


def bit_depth(peak: float) -> dict:
    """``bit_depth`` and ``peak`` entries for images of this peak grey level."""
    return {"bit_depth": 16 if peak > 255 else 8, "peak": float(peak)}
