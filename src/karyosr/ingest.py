"""ingest: raw dataset files -> image shards with labels and split groups, bad files quarantined.

Every ingest job lists the whole raw dataset (cheap) and decodes only the files whose image_id
hashes to its shard, so the number of jobs is the shard count, known before any data is read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from karyosr import shards
from karyosr.images import ImageRejected, decode_grayscale
from karyosr.labels import CLASS_NAMES, LabelError, parse_label

log = logging.getLogger(__name__)

REJECTED_COLUMNS = ["image_id", "source", "stage", "reason"]
BIOIMLAB_NAME = re.compile(r"^(?P<cell>.+) (?P<label>\d{1,2}|[XYxy])(?P<copy>[ab]?)$")


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


def list_csv(root: Path, table: str) -> pd.DataFrame:
    """A table with columns path, label, group; paths are relative to the table's folder."""
    table_path = (root / table) if not os.path.isabs(table) else Path(table)
    try:
        frame = pd.read_csv(table_path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise LayoutError(f"{table_path}: the table named by dataset.layout.table does not exist") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise LayoutError(f"{table_path}: cannot read the table ({exc}); expected a UTF-8 CSV file with "
                          "columns path, label, group") from exc
    missing = {"path", "label", "group"} - set(frame.columns)
    if missing:
        raise LayoutError(f"{table_path}: missing column(s) {sorted(missing)}; expected path, label, group")
    base = table_path.parent
    sources = [os.path.relpath(base / p, root) for p in frame["path"]]
    return pd.DataFrame(
        {
            "source": [Path(s).as_posix() for s in sources],
            "group": frame["group"].replace("", None),
            "label_text": frame["label"],
            "error": [None if g else "empty group" for g in frame["group"]],
        }
    )


def list_candidates(base: Path, dataset: str, layout: dict) -> pd.DataFrame:
    """All files of the raw dataset with image_id, group, label; ``error`` set where unusable."""
    if not base.is_dir():
        raise LayoutError(f"dataset folder {base} does not exist or is not a folder")
    kind = layout["type"]
    if kind == "bioimlab":
        files = list_bioimlab(base, layout["extensions"])
    elif kind == "class_folders":
        files = list_class_folders(base, layout["extensions"], layout["group_regex"])
    else:
        files = list_csv(base, layout["table"])
    if files.empty:
        raise LayoutError(f"{base}: no image files found for the {kind!r} layout")

    labels, errors = [], []
    for text, error in zip(files["label_text"], files["error"]):
        label = None
        if pd.isna(error):
            error = None
            try:
                label = parse_label(text)
            except LabelError as exc:
                error = str(exc)
        labels.append(label)
        errors.append(error)
    files["label"] = pd.array(labels, dtype="Int8")
    files["error"] = errors
    stems = [_stem(s) for s in files["source"]]
    files["image_id"] = [f"{dataset}/{g}/{s}" for g, s in zip(files["group"].fillna("unknown"), stems)]
    duplicated = files["image_id"].duplicated(keep="first") & files["error"].isna()
    files.loc[duplicated, "error"] = "duplicate image_id: another file has the same group and stem"
    files["dataset"] = dataset
    return files.drop(columns=["label_text"]).sort_values("source", kind="stable").reset_index(drop=True)


def ingest_shard(
    root: str | os.PathLike, candidates: pd.DataFrame, shard: int, n_shards: int, max_pixels: int
) -> tuple[pd.DataFrame, list[np.ndarray], pd.DataFrame]:
    """Decode this shard's files: (manifest rows, images, rejected rows)."""
    mine = candidates[[shards.shard_of(i, n_shards) == shard for i in candidates["image_id"]]]
    rows, images, rejected = [], [], []
    for item in mine.itertuples(index=False):
        reason = None if pd.isna(item.error) else item.error
        if reason is None:
            try:
                data = (Path(root) / item.source).read_bytes()
                image, converted = decode_grayscale(data, max_pixels)
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
                "class_name": CLASS_NAMES[item.label],
                "source": item.source,
                "source_sha256": hashlib.sha256(data).hexdigest(),
                "converted_from": converted,
            }
        )
        images.append(image)
    meta = pd.DataFrame(rows, columns=["image_id", "dataset", "group", "label", "class_name", "source",
                                       "source_sha256", "converted_from"])
    meta["label"] = meta["label"].astype("Int8")
    return meta, images, pd.DataFrame(rejected, columns=REJECTED_COLUMNS)


def dataset_folder(root, layout: dict) -> Path:
    return Path(root).expanduser() / layout.get("subdir", "")


def run_inventory(root, dataset: str, layout: dict, n_shards: int, out_table) -> None:
    """List the raw dataset once, with each file's shard, so ingest jobs need not walk it again."""
    base = dataset_folder(root, layout)
    candidates = list_candidates(base, dataset, layout)
    candidates["shard"] = [shards.shard_of(i, n_shards) for i in candidates["image_id"]]
    shards.write_table(out_table, candidates)
    log.info("%d files listed in %s, %d unusable", len(candidates), base, candidates["error"].notna().sum())


def run(root, inventory, layout: dict, shard: int, n_shards: int, max_pixels: int, out_shard, out_rejected) -> None:
    candidates = shards.read_table(inventory)
    meta, images, rejected = ingest_shard(dataset_folder(root, layout), candidates, shard, n_shards, max_pixels)
    shards.write_shard(out_shard, meta, images)
    shards.write_table(out_rejected, rejected)
    log.info("shard %d/%d: %d images ingested, %d quarantined", shard, n_shards, len(meta), len(rejected))
    for item in rejected.itertuples():
        log.warning("quarantined %s: %s", item.source, item.reason)
