"""ingest: raw dataset files -> image shards with labels and split groups, bad files quarantined.

Every ingest job lists the whole raw dataset (cheap) and decodes only the files whose image_id
hashes to its shard, so the number of jobs is the shard count, known before any data is read.

Two layouts hold whole microscope images rather than labelled chromosomes (no label, native
size): ``images`` (a folder, the group from a regex on the relative path or from the folder, or a
CSV of path, group) and ``magnification_series`` (the same
slide captured at several magnifications, ``<slide>/<magnification>/<file>`` or a CSV of slide,
magnification, path). A series is sharded by slide, not by image, so that every capture of a
slide lands in the same shard and the register stage reads one shard per job.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from karyosr.config import WHOLE_IMAGE_LAYOUTS
from karyosr.io import shards
from karyosr.io.images import ImageRejected, decode_image
from karyosr.labels import CLASS_NAMES, LabelError, parse_label

log = logging.getLogger(__name__)

REJECTED_COLUMNS = ["image_id", "source", "stage", "reason"]
BIOIMLAB_NAME = re.compile(r"^(?P<cell>.+) (?P<label>\d{1,2}|[XYxy])(?P<copy>[ab]?)$")
MAGNIFICATION_LABEL = re.compile(r"^(?P<value>\d+(?:\.\d+)?)[xX]$")
# Per-image columns a magnification series adds to the ingest manifest.
SERIES_COLUMNS = ["slide", "magnification", "magnification_label"]
# What decoding tells about each image (karyosr.io.images.Decoded): decoder warnings of a file that
# was kept, pixel size, and the linear map of its grey levels to physical (DICOM modality) values.
DECODE_COLUMNS = ["decode_warning", "pixel_size_um", "rescale_slope", "rescale_intercept"]


class LayoutError(ValueError):
    pass


def _image_files(root: Path, extensions: list[str]) -> list[str]:
    """Image files below root as sorted posix paths relative to root (os.walk: pathlib is several
    times slower per file, which shows on 100,000-image datasets)."""
    wanted = tuple(e.lower() for e in extensions)
    found = []
    for folder, _, names in os.walk(root):
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        found.extend(prefix + n for n in names if n.lower().endswith(wanted))
    return sorted(found)


def _checked_name(rel: str) -> tuple[str, str | None]:
    """(rel, None), or for a name that is not valid UTF-8 (written under another encoding; Python
    hands it over with surrogate escapes, which no table can store) a printable escape of it and
    the quarantine reason."""
    try:
        rel.encode("utf-8")
        return rel, None
    except UnicodeEncodeError:
        safe = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return safe, f"file name {safe!r} is not valid UTF-8; rename the file"


def _stem(rel: str) -> str:
    return os.path.splitext(rel.rsplit("/", 1)[-1])[0]


def _without_extension(rel: str) -> str:
    folder, _, name = rel.rpartition("/")
    return (folder + "/" if folder else "") + os.path.splitext(name)[0]


def list_bioimlab(root: Path, extensions: list[str]) -> pd.DataFrame:
    """``single_chromosomes/<cell>/<cell> <class><a|b>.bmp``; the cell folder is the group."""
    if not (root / "single_chromosomes").is_dir():
        raise LayoutError(f"{root}: no 'single_chromosomes' folder, as the bioimlab layout expects")
    rows = []
    for rel in _image_files(root / "single_chromosomes", extensions):
        rel, error = _checked_name(rel)
        parts = rel.split("/")
        match = BIOIMLAB_NAME.match(_stem(rel))
        if error:
            pass
        elif len(parts) != 2:
            error = f"{rel!r} is not directly inside a cell folder"
        elif not match:
            error = f"file name {parts[-1]!r} is not '<cell> <class><a|b>'"
        rows.append(
            {
                "source": "single_chromosomes/" + rel,
                "group": parts[0] if len(parts) == 2 else None,
                "label_text": match["label"] if match else None,
                "error": error,
            }
        )
    return pd.DataFrame(rows, columns=["source", "group", "label_text", "error"])


def list_class_folders(root: Path, extensions: list[str], group_regex: str) -> pd.DataFrame:
    """``<root>/<class>/<file>``; the split group comes from the file stem via ``group_regex``."""
    pattern = re.compile(group_regex)
    rows = []
    for rel in _image_files(root, extensions):
        rel, error = _checked_name(rel)
        parts = rel.split("/")
        match = pattern.search(_stem(rel))
        if error:
            pass
        elif len(parts) != 2:
            error = f"{rel!r} is not directly inside a class folder"
        elif not match:
            error = f"file stem {_stem(rel)!r} does not match dataset.layout.group_regex {group_regex!r}"
        rows.append(
            {
                "source": rel,
                "group": match["group"] if match else None,
                "label_text": parts[0] if len(parts) == 2 else None,
                "error": error,
            }
        )
    return pd.DataFrame(rows, columns=["source", "group", "label_text", "error"])


def _read_layout_table(root: Path, table: str, required: list[str]) -> tuple[pd.DataFrame, Path]:
    """The CSV named by dataset.layout.table (relative to root unless absolute) and its folder."""
    table_path = (root / table) if not os.path.isabs(table) else Path(table)
    try:
        frame = pd.read_csv(table_path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise LayoutError(f"{table_path}: the table named by dataset.layout.table does not exist") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise LayoutError(f"{table_path}: cannot read the table ({exc}); expected a UTF-8 CSV file with "
                          f"columns {', '.join(required)}") from exc
    missing = set(required) - set(frame.columns)
    if missing:
        raise LayoutError(f"{table_path}: missing column(s) {sorted(missing)}; expected {', '.join(required)}")
    return frame, table_path.parent


def _relative_sources(root: Path, base: Path, paths) -> list[str]:
    return [Path(os.path.relpath(base / p, root)).as_posix() for p in paths]


def list_csv(root: Path, table: str) -> pd.DataFrame:
    """A table with columns path, label, group; paths are relative to the table's folder."""
    frame, base = _read_layout_table(root, table, ["path", "label", "group"])
    return pd.DataFrame(
        {
            "source": _relative_sources(root, base, frame["path"]),
            "group": frame["group"].replace("", None),
            "label_text": frame["label"],
            "error": [None if g else "empty group" for g in frame["group"]],
        }
    )


def list_images(root: Path, extensions: list[str], group_regex: str, table: str | None = None,
                group: str = "regex") -> pd.DataFrame:
    """Unlabelled whole images: every image file below root (any depth), or the rows of a CSV with
    columns path, group. Without a table the split group is, for ``group`` 'regex', the named group
    of ``group_regex`` searched in the path relative to root without its extension (e.g.
    ``slideA/IMG_001``: a folder or a part of the name), for 'folder' the path of the file's folder
    relative to root (``slideA``, ``patient7/series2``; files directly in root have none)."""
    if table:
        frame, base = _read_layout_table(root, table, ["path", "group"])
        return pd.DataFrame({
            "source": _relative_sources(root, base, frame["path"]),
            "group": frame["group"].replace("", None),
            "label_text": None,
            "error": [None if g else "empty group" for g in frame["group"]],
        })
    pattern = re.compile(group_regex) if group == "regex" else None
    rows = []
    for rel in _image_files(root, extensions):
        rel, error = _checked_name(rel)
        found = None
        if error:
            pass
        elif pattern is None:
            found = rel.rpartition("/")[0] or None
            if found is None:
                error = (f"{rel!r} is not in a folder: with dataset.layout.group folder the split group is the "
                         "folder an image is in")
        else:
            match = pattern.search(_without_extension(rel))
            found = match["group"] if match else None
            if not found:
                error = (f"path {_without_extension(rel)!r} (relative, without extension) does not match "
                         f"dataset.layout.group_regex {group_regex!r}" if not match else
                         f"dataset.layout.group_regex {group_regex!r} finds an empty group in {rel!r}")
        rows.append({"source": rel, "group": found, "label_text": None, "error": error})
    return pd.DataFrame(rows, columns=["source", "group", "label_text", "error"])


def parse_magnification(text) -> float:
    """The nominal magnification of a label such as ``10x``, ``40X`` or ``2.5x``."""
    match = MAGNIFICATION_LABEL.match(str(text).strip())
    if not match or float(match["value"]) <= 0:
        raise LayoutError(f"magnification label {text!r} is not a positive number followed by 'x' (e.g. '10x')")
    return float(match["value"])


def list_magnification_series(root: Path, extensions: list[str], table: str | None = None) -> pd.DataFrame:
    """The same slides at several magnifications: ``<slide>/<magnification>/<file>`` (e.g.
    ``s01/10x/a.png``) or a CSV with columns slide, magnification, path. The slide is the split
    group. Unreadable magnification labels, files at another depth and slides captured at one
    magnification only (nothing to register against) are unusable, with the reason."""
    if table:
        frame, base = _read_layout_table(root, table, ["slide", "magnification", "path"])
        files = pd.DataFrame({
            "source": _relative_sources(root, base, frame["path"]),
            "slide": frame["slide"].replace("", None),
            "magnification_label": frame["magnification"].str.strip(),
            "error": [None if s else "empty slide" for s in frame["slide"]],
        })
    else:
        rows = []
        for rel in _image_files(root, extensions):
            rel, error = _checked_name(rel)
            parts = rel.split("/")
            if not error and len(parts) != 3:
                error = f"{rel!r} is not at '<slide>/<magnification>/<file>'"
            ok = len(parts) == 3
            rows.append({"source": rel, "slide": parts[0] if ok else None,
                         "magnification_label": parts[1] if ok else None, "error": error})
        files = pd.DataFrame(rows, columns=["source", "slide", "magnification_label", "error"])
    magnifications, errors = [], []
    for label, error in zip(files["magnification_label"], files["error"]):
        value = float("nan")
        if pd.isna(error):
            error = None
            try:
                value = parse_magnification(label)
            except LayoutError as exc:
                error = str(exc)
        magnifications.append(value)
        errors.append(error)
    files["magnification"] = np.array(magnifications, dtype=float)
    files["error"] = errors
    usable = files["error"].isna()
    for slide, levels in files[usable].groupby("slide")["magnification"]:
        if levels.nunique() < 2:
            found = ", ".join(sorted(set(files.loc[levels.index, "magnification_label"])))
            files.loc[levels.index, "error"] = (f"slide {slide!r} has images at one magnification only ({found}): "
                                                "nothing to register against")
    files["group"] = files["slide"]
    files["label_text"] = None
    return files[["source", "group", "label_text", "error", "slide", "magnification", "magnification_label"]]


def list_candidates(base: Path, dataset: str, layout: dict) -> pd.DataFrame:
    """All files of the raw dataset with image_id, group, label; ``error`` set where unusable."""
    if not base.is_dir():
        raise LayoutError(f"dataset folder {base} does not exist or is not a folder")
    kind = layout["type"]
    if kind == "bioimlab":
        files = list_bioimlab(base, layout["extensions"])
    elif kind == "class_folders":
        files = list_class_folders(base, layout["extensions"], layout["group_regex"])
    elif kind == "images":
        files = list_images(base, layout["extensions"], layout.get("group_regex", ""), layout.get("table"),
                            layout.get("group", "regex"))
    elif kind == "magnification_series":
        files = list_magnification_series(base, layout["extensions"], layout.get("table"))
    else:
        files = list_csv(base, layout["table"])
    if files.empty:
        raise LayoutError(f"{base}: no image files found for the {kind!r} layout")

    labels, errors = [], []
    labelled = kind not in WHOLE_IMAGE_LAYOUTS
    for text, error in zip(files["label_text"], files["error"]):
        label = None
        if pd.isna(error):
            error = None
            try:
                label = parse_label(text) if labelled else None
            except LabelError as exc:
                error = str(exc)
        labels.append(label)
        errors.append(error)
    files["label"] = pd.array(labels, dtype="Int8")
    files["error"] = errors
    stems = [_stem(s) for s in files["source"]]
    groups = files["group"].fillna("unknown")
    if kind == "magnification_series":  # the same file name under every magnification of a slide
        levels = files["magnification_label"].fillna("unknown")
        files["image_id"] = [f"{dataset}/{g}/{m}/{s}" for g, m, s in zip(groups, levels, stems)]
    else:
        files["image_id"] = [f"{dataset}/{g}/{s}" for g, s in zip(groups, stems)]
    if kind == "images":
        # <dataset>/<relative path without extension> where <group>/<stem> does not tell files apart
        # (always with group folder: slideA/IMG_001.jpg and slideB/IMG_001.jpg)
        by_path = pd.Series([f"{dataset}/{_without_extension(s)}" for s in files["source"]], index=files.index)
        inside = ~files["source"].str.startswith("../")
        if layout.get("group", "regex") == "folder" and not layout.get("table"):
            files["image_id"] = by_path
        else:
            collide = files["image_id"].duplicated(keep=False) & inside
            files.loc[collide, "image_id"] = by_path[collide]
    duplicated = files["image_id"].duplicated(keep="first") & files["error"].isna()
    files.loc[duplicated, "error"] = ("duplicate image_id: another file has the same group and stem (or the same "
                                      "path with another extension)")
    files["dataset"] = dataset
    return files.drop(columns=["label_text"]).sort_values("source", kind="stable").reset_index(drop=True)


def shard_keys(candidates: pd.DataFrame) -> pd.Series:
    """What each file is sharded by: its slide for a magnification series (all captures of a slide
    in one shard), else its image_id."""
    return candidates["slide"].fillna(candidates["image_id"]) if "slide" in candidates else candidates["image_id"]


def ingest_shard(
    root: str | os.PathLike, candidates: pd.DataFrame, shard: int, n_shards: int, max_pixels: int
) -> tuple[pd.DataFrame, list[np.ndarray], pd.DataFrame]:
    """Decode this shard's files: (manifest rows, images, rejected rows)."""
    mine = candidates[[shards.shard_of(k, n_shards) == shard for k in shard_keys(candidates)]]
    extra = [c for c in SERIES_COLUMNS if c in candidates]
    rows, images, rejected = [], [], []
    for item in mine.itertuples(index=False):
        reason = None if pd.isna(item.error) else item.error
        if reason is None:
            try:
                data = (Path(root) / item.source).read_bytes()
                decoded = decode_image(data, max_pixels, item.source)
            except OSError as exc:
                reason = f"cannot read the file: {exc.strerror or exc}"
            except ImageRejected as exc:
                reason = str(exc)
        if reason is not None:
            rejected.append({"image_id": item.image_id, "source": item.source, "stage": "ingest", "reason": reason})
            continue
        rows.append(
            {
                "image_id": item.image_id,
                "dataset": item.dataset,
                "group": item.group,
                "label": item.label,
                "class_name": None if pd.isna(item.label) else CLASS_NAMES[item.label],
                "source": item.source,
                "source_sha256": hashlib.sha256(data).hexdigest(),
                "converted_from": decoded.converted,
                "decode_warning": decoded.warning,
                "pixel_size_um": decoded.pixel_size_um,
                "rescale_slope": decoded.rescale_slope,
                "rescale_intercept": decoded.rescale_intercept,
                **{c: getattr(item, c) for c in extra},
            }
        )
        images.append(decoded.image)
    meta = pd.DataFrame(rows, columns=["image_id", "dataset", "group", "label", "class_name", "source",
                                       "source_sha256", "converted_from", *DECODE_COLUMNS, *extra])
    meta["label"] = meta["label"].astype("Int8")
    for column in DECODE_COLUMNS[1:]:
        meta[column] = meta[column].astype(float)
    return meta, images, pd.DataFrame(rejected, columns=REJECTED_COLUMNS)


def dataset_folder(root, layout: dict) -> Path:
    return Path(root).expanduser() / layout.get("subdir", "")


def run_inventory(root, dataset: str, layout: dict, n_shards: int, out_table) -> None:
    """List the raw dataset once, with each file's shard, so ingest jobs need not walk it again."""
    base = dataset_folder(root, layout)
    candidates = list_candidates(base, dataset, layout)
    candidates["shard"] = [shards.shard_of(k, n_shards) for k in shard_keys(candidates)]
    shards.write_table(out_table, candidates)
    log.info("%d files listed in %s, %d unusable", len(candidates), base, candidates["error"].notna().sum())


def run(root, inventory, layout: dict, shard: int, n_shards: int, max_pixels: int, out_shard, out_rejected) -> None:
    candidates = shards.read_table(inventory)
    meta, images, rejected = ingest_shard(dataset_folder(root, layout), candidates, shard, n_shards, max_pixels)
    shards.write_shard(out_shard, meta, images)
    shards.write_table(out_rejected, rejected)
    log.info("shard %d/%d: %d images ingested, %d quarantined", shard, n_shards, len(meta), len(rejected))
    for item in meta[meta["decode_warning"] != ""].itertuples():
        log.warning("kept %s, decoded with a warning: %s", item.source, item.decode_warning)
    for item in rejected.itertuples():
        log.warning("quarantined %s: %s", item.source, item.reason)
