"""Tests for karyosr.dataset.ingest (and karyosr.labels): the three layouts, quarantine, shards."""

from __future__ import annotations

import hashlib
import io
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from karyosr.dataset import ingest
from karyosr.dataset.ingest import LayoutError, ingest_shard, list_candidates
from karyosr.io import shards
from karyosr.labels import CLASS_NAMES, N_CLASSES, LabelError, parse_label

EXTENSIONS = [".tif", ".tiff", ".png", ".bmp", ".jpg", ".jpeg"]
BIOIMLAB = {"type": "bioimlab", "subdir": "", "extensions": EXTENSIONS, "group_regex": "_(?P<group>[^_]+)$"}
CLASS_FOLDERS = {"type": "class_folders", "subdir": "", "extensions": EXTENSIONS, "group_regex": "_(?P<group>[^_]+)$"}

# With pandas 3 (the pinned 3.1.1) a column built from None and strings is a str column whose
# missing values are NaN, not None. list_candidates (``if error is None`` before parse_label) and
# ingest_shard (``if reason is None`` before decoding) test for None, so no label is ever parsed
# and every valid file is quarantined with reason NaN. Tests that need a file to get through
# carry this mark.

def _png(image):
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def _write(path: Path, data: bytes) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _image(seed: int, shape=(12, 9), dtype=np.uint8):
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)


def _encode(image, ext):
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def _ingest_all(root: Path, candidates: pd.DataFrame, n_shards: int, max_pixels: int = 10**8):
    metas, images, rejected = [], {}, []
    for shard in range(n_shards):
        meta, imgs, rej = ingest_shard(root, candidates, shard, n_shards, max_pixels)
        for image_id in meta["image_id"]:
            assert shards.shard_of(image_id, n_shards) == shard
        for image_id in rej["image_id"]:
            assert shards.shard_of(image_id, n_shards) == shard
        metas.append(meta)
        images.update(zip(meta["image_id"], imgs))
        rejected.append(rej)
    return pd.concat(metas, ignore_index=True), images, pd.concat(rejected, ignore_index=True)


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    "text, label",
    [("1", 0), ("01", 0), ("07", 6), ("22", 21), ("23", 22), ("24", 23), ("X", 22), ("x", 22), ("Y", 23),
     (" y ", 23)],
)
def test_parse_label(text, label):
    assert parse_label(text) == label


@pytest.mark.parametrize("text", ["0", "00", "25", "abc", "", "1a", "-1", "XY"])
def test_parse_label_rejects(text):
    with pytest.raises(LabelError, match="not a chromosome class"):
        parse_label(text)


def test_class_names():
    assert N_CLASSES == 24 and CLASS_NAMES[0] == "1" and CLASS_NAMES[21] == "22"
    assert CLASS_NAMES[22] == "X" and CLASS_NAMES[23] == "Y"


# --------------------------------------------------------------------------- bioimlab


@pytest.fixture
def bioimlab(tmp_path):
    """A tiny BioImLab tree. Returns (root, {source: (group, label, data, image or None)})."""
    root = tmp_path / "bio"
    cells = root / "single_chromosomes"
    files = {}

    def add(rel, label, data, image=None):
        _write(root / rel, data)
        files[rel] = (rel.split("/")[1] if rel.count("/") == 2 else None, label, data, image)

    for i, (name, label) in enumerate([("c0001 1a", 0), ("c0001 1b", 0), ("c0001 23a", 22), ("c0001 24", 23),
                                       ("c0001 07b", 6)]):
        image = _image(i)
        add(f"single_chromosomes/c0001/{name}.bmp", label, _encode(image, ".bmp"), image)
    image = _image(10, (7, 15), np.uint16)
    add("single_chromosomes/c0002/c0002 X.png", 22, _png(image), image)
    image = _image(11)
    add("single_chromosomes/c0002/c0002 22a.BMP", 21, _encode(image, ".bmp"), image)
    # bad ones
    add("single_chromosomes/c0002/c0002 25a.bmp", None, _encode(_image(12), ".bmp"))  # no such class
    add("single_chromosomes/c0002/c0002 chr5.bmp", None, _encode(_image(13), ".bmp"))  # unparseable
    add("single_chromosomes/c0002/c0002 3a.bmp", None, b"this is not really a bitmap" * 3)  # corrupt
    add("single_chromosomes/c0002/c0002 4b.bmp", None, b"")  # zero bytes
    (cells / "c0002" / "notes.txt").write_text("not an image")
    return root, files


def test_bioimlab_listing(bioimlab):
    root, files = bioimlab
    cand = list_candidates(root, "bio", BIOIMLAB)
    assert sorted(cand["source"]) == sorted(files)
    assert list(cand["source"]) == sorted(cand["source"])
    assert set(cand["dataset"]) == {"bio"}
    by_source = cand.set_index("source")
    for source, (group, _, _, _) in files.items():
        row = by_source.loc[source]
        assert row["group"] == group
        stem = source.rsplit("/", 1)[1].rsplit(".", 1)[0]
        assert row["image_id"] == f"bio/{group}/{stem}"
    assert by_source.loc["single_chromosomes/c0001/c0001 1a.bmp", "image_id"] == "bio/c0001/c0001 1a"
    unparseable = by_source.loc["single_chromosomes/c0002/c0002 chr5.bmp", "error"]
    assert isinstance(unparseable, str) and "c0002 chr5.bmp" in unparseable
    assert cand["image_id"].is_unique


def test_bioimlab_labels(bioimlab):
    root, files = bioimlab
    cand = list_candidates(root, "bio", BIOIMLAB).set_index("source")
    for source, (_, label, _, image) in files.items():
        if image is not None:
            assert cand.loc[source, "label"] == label, source
            assert pd.isna(cand.loc[source, "error"]), source
    assert "not a chromosome class" in cand.loc["single_chromosomes/c0002/c0002 25a.bmp", "error"]
    assert pd.isna(cand.loc["single_chromosomes/c0002/c0002 25a.bmp", "label"])


def test_bioimlab_ingest(bioimlab):
    root, files = bioimlab
    cand = list_candidates(root, "bio", BIOIMLAB)
    meta, images, rejected = _ingest_all(root, cand, n_shards=3)

    # every candidate exactly once, kept or rejected
    assert sorted(list(meta["source"]) + list(rejected["source"])) == sorted(files)
    good = {s for s, v in files.items() if v[3] is not None}
    assert set(meta["source"]) == good
    by_source = meta.set_index("source")
    for source in good:
        group, label, data, image = files[source]
        row = by_source.loc[source]
        assert row["group"] == group and row["label"] == label and row["class_name"] == CLASS_NAMES[label]
        assert row["dataset"] == "bio"
        assert row["source_sha256"] == hashlib.sha256(data).hexdigest()
        assert row["converted_from"] == ""
        got = images[row["image_id"]]
        assert got.dtype == image.dtype
        np.testing.assert_array_equal(got, image)

    reasons = rejected.set_index("source")["reason"]
    assert set(rejected["stage"]) == {"ingest"}
    assert "not a chromosome class" in reasons["single_chromosomes/c0002/c0002 25a.bmp"]
    assert "c0002 chr5.bmp" in reasons["single_chromosomes/c0002/c0002 chr5.bmp"]
    assert "cannot decode" in reasons["single_chromosomes/c0002/c0002 3a.bmp"]
    assert "empty" in reasons["single_chromosomes/c0002/c0002 4b.bmp"]


def test_valid_file_is_kept_next_to_a_bad_one(tmp_path):
    # A dataset of only valid files happens to work (an all-None column stays object dtype);
    # one unusable file beside it turns the error column into str with NaN.
    _write(tmp_path / "single_chromosomes" / "c1" / "c1 5a.png", _png(np.full((4, 4), 7, np.uint8)))
    _write(tmp_path / "single_chromosomes" / "c1" / "c1 junk.png", _png(np.full((4, 4), 7, np.uint8)))
    cand = list_candidates(tmp_path, "d", BIOIMLAB)
    meta, images, rejected = ingest_shard(tmp_path, cand, 0, 1, 10**6)
    assert list(rejected["source"]) == ["single_chromosomes/c1/c1 junk.png"], rejected.to_dict("records")
    assert list(meta["label"]) == [4]
    np.testing.assert_array_equal(images[0], np.full((4, 4), 7, np.uint8))


def test_all_valid_dataset_is_kept(tmp_path):
    for name, label in [("c1 5a", 4), ("c1 Y", 23)]:
        _write(tmp_path / "single_chromosomes" / "c1" / f"{name}.png", _png(np.full((4, 4), label, np.uint8)))
    cand = list_candidates(tmp_path, "d", BIOIMLAB)
    meta, images, rejected = ingest_shard(tmp_path, cand, 0, 1, 10**6)
    assert rejected.empty
    assert sorted(meta["label"]) == [4, 23]
    assert sorted(meta["class_name"]) == ["5", "Y"]


def test_bioimlab_missing_single_chromosomes_folder(tmp_path):
    (tmp_path / "c0001").mkdir()
    with pytest.raises(LayoutError, match="single_chromosomes") as info:
        list_candidates(tmp_path, "d", BIOIMLAB)
    assert str(tmp_path) in str(info.value)


def test_bioimlab_empty_dataset(tmp_path):
    (tmp_path / "single_chromosomes" / "c0001").mkdir(parents=True)
    (tmp_path / "single_chromosomes" / "c0001" / "readme.txt").write_text("x")
    with pytest.raises(LayoutError, match="no image files") as info:
        list_candidates(tmp_path, "d", BIOIMLAB)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("layout", [BIOIMLAB, CLASS_FOLDERS, {"type": "csv", "table": "t.csv"}],
                         ids=["bioimlab", "class_folders", "csv"])
def test_missing_dataset_folder(tmp_path, layout):
    with pytest.raises(LayoutError) as info:
        list_candidates(tmp_path / "nowhere", "d", layout)
    assert str(tmp_path / "nowhere") in str(info.value)


def test_duplicate_image_id_quarantined(tmp_path):
    _write(tmp_path / "single_chromosomes" / "c1" / "c1 5a.png", _png(np.zeros((4, 4), np.uint8)))
    _write(tmp_path / "single_chromosomes" / "c1" / "c1 5a.bmp", _encode(np.zeros((4, 4), np.uint8), ".bmp"))
    cand = list_candidates(tmp_path, "d", BIOIMLAB)
    assert len(cand) == 2 and set(cand["image_id"]) == {"d/c1/c1 5a"}
    errors = cand["error"].tolist()
    assert sum(isinstance(e, str) and "duplicate image_id" in e for e in errors) == 1


# --------------------------------------------------------------------------- class folders


@pytest.fixture
def class_folders(tmp_path):
    """G-band style ``<class>/<class>_<h>_<patient>_<case>_<cell>.tiff`` under DataNew/."""
    root = tmp_path / "gband" / "DataNew"
    files = {}

    def add(rel, group, label, data, image=None):
        _write(root / rel, data)
        files[rel] = (group, label, data, image)

    good = [("1", "1_1_56131_115966_7", "7", 0), ("1", "1_2_56131_115966_7", "7", 0),
            ("2", "2_1_56131_115966_7", "7", 1), ("X", "X_1_56131_115966_7", "7", 22),
            ("Y", "Y_1_56131_115966_8", "8", 23), ("23", "23_1_56131_115966_8", "8", 22),
            ("24", "24_1_56131_115966_9", "9", 23), ("22", "22_1_56131_115966_9", "9", 21)]
    for i, (folder, stem, group, label) in enumerate(good):
        image = _image(20 + i, (10 + i, 8), np.uint16 if i % 2 else np.uint8)
        add(f"{folder}/{stem}.tiff", group, label, _encode(image, ".tiff"), image)
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[..., 1] = 200
    add("3/3_1_56131_115966_9.tif", "9", 2, _encode(rgb, ".tif"), "rgb")
    # bad ones
    add("25/25_1_56131_115966_7.tiff", "7", None, _encode(_image(40), ".tiff"))  # no class 25
    add("abc/abc_1_56131_115966_7.tiff", "7", None, _encode(_image(41), ".tiff"))  # no class abc
    add("4/nounderscore.tiff", None, None, _encode(_image(42), ".tiff"))  # group regex fails
    tiff = _encode(_image(43, (64, 64)), ".tiff")
    add("5/5_1_56131_115966_8.tiff", "8", 4, tiff[: len(tiff) // 3])  # truncated
    add("6/6_1_56131_115966_8.tiff", "8", 5, b"")  # zero bytes
    add("stray_1_2_3_4.tiff", "4", None, _encode(_image(44), ".tiff"))  # not in a class folder
    _write(root / "1" / "Thumbs.db", b"junk")
    return root, files


def test_class_folders_listing(class_folders):
    root, files = class_folders
    cand = list_candidates(root, "gband", CLASS_FOLDERS)
    assert sorted(cand["source"]) == sorted(files)
    by_source = cand.set_index("source")
    for source, (group, _, _, _) in files.items():
        if group is not None:
            assert by_source.loc[source, "group"] == group, source
    assert by_source.loc["1/1_1_56131_115966_7.tiff", "image_id"] == "gband/7/1_1_56131_115966_7"
    assert by_source.loc["Y/Y_1_56131_115966_8.tiff", "image_id"] == "gband/8/Y_1_56131_115966_8"
    regex_error = by_source.loc["4/nounderscore.tiff", "error"]
    assert isinstance(regex_error, str) and "nounderscore" in regex_error and "group_regex" in regex_error
    stray_error = by_source.loc["stray_1_2_3_4.tiff", "error"]
    assert isinstance(stray_error, str) and "class folder" in stray_error


def test_class_folders_labels(class_folders):
    root, files = class_folders
    cand = list_candidates(root, "gband", CLASS_FOLDERS).set_index("source")
    for source, (_, label, _, image) in files.items():
        if image is not None:
            assert cand.loc[source, "label"] == label, source
    for source in ("25/25_1_56131_115966_7.tiff", "abc/abc_1_56131_115966_7.tiff"):
        assert "not a chromosome class" in cand.loc[source, "error"]


def test_class_folders_ingest(class_folders):
    root, files = class_folders
    cand = list_candidates(root, "gband", CLASS_FOLDERS)
    meta, images, rejected = _ingest_all(root, cand, n_shards=4)
    assert sorted(list(meta["source"]) + list(rejected["source"])) == sorted(files)
    assert meta["image_id"].is_unique and rejected["image_id"].is_unique
    good = {s for s, v in files.items() if v[3] is not None}
    assert set(meta["source"]) == good
    by_source = meta.set_index("source")
    for source in good:
        group, label, data, image = files[source]
        row = by_source.loc[source]
        assert (row["group"], row["label"]) == (group, label)
        assert row["source_sha256"] == hashlib.sha256(data).hexdigest()
        if isinstance(image, str):
            assert row["converted_from"] == "rgb"
            assert images[row["image_id"]].shape == (6, 6)
        else:
            assert row["converted_from"] == ""
            np.testing.assert_array_equal(images[row["image_id"]], image)
            assert images[row["image_id"]].dtype == image.dtype
    reasons = rejected.set_index("source")["reason"]
    assert "not a chromosome class" in reasons["25/25_1_56131_115966_7.tiff"]
    assert "not a chromosome class" in reasons["abc/abc_1_56131_115966_7.tiff"]
    assert "group_regex" in reasons["4/nounderscore.tiff"]
    assert "cannot decode" in reasons["5/5_1_56131_115966_8.tiff"]
    assert "empty" in reasons["6/6_1_56131_115966_8.tiff"]
    assert "class folder" in reasons["stray_1_2_3_4.tiff"]


def test_inventory_then_run_all_shards(class_folders, tmp_path):
    """The workflow's path: one inventory table, then one ingest job per shard."""
    root, files = class_folders
    layout = dict(CLASS_FOLDERS, subdir="DataNew")
    inventory = tmp_path / "out" / "inventory.parquet"
    n = 3
    ingest.run_inventory(root.parent, "gband", layout, n, inventory)
    kept, rejected = [], []
    for shard in range(n):
        out_shard, out_rej = tmp_path / "out" / f"{shard:03d}.parquet", tmp_path / "out" / f"r{shard:03d}.parquet"
        ingest.run(root.parent, inventory, layout, shard, n, 10**8, out_shard, out_rej)
        kept.append(shards.read_shard_meta(out_shard))
        rejected.append(shards.read_table(out_rej))
    kept, rejected = pd.concat(kept), pd.concat(rejected)
    assert sorted(list(kept["source"]) + list(rejected["source"])) == sorted(files)
    assert set(kept["source"]) == {s for s, v in files.items() if v[3] is not None}
    assert all(isinstance(r, str) and r for r in rejected["reason"])


def test_class_folders_empty_dataset(tmp_path):
    (tmp_path / "1").mkdir()
    with pytest.raises(LayoutError, match="no image files") as info:
        list_candidates(tmp_path, "d", CLASS_FOLDERS)
    assert str(tmp_path) in str(info.value)


def test_max_pixels_quarantines(tmp_path):
    _write(tmp_path / "1" / "1_a_1.png", _png(np.zeros((40, 50), np.uint8)))
    cand = list_candidates(tmp_path, "d", CLASS_FOLDERS)
    meta, _, rejected = ingest_shard(tmp_path, cand, 0, 1, max_pixels=1000)
    assert meta.empty
    assert "max_pixels" in rejected.loc[0, "reason"]


# --------------------------------------------------------------------------- csv


@pytest.fixture
def csv_dataset(tmp_path):
    root = tmp_path / "tab"
    files = {}
    rows = []

    def add(name, label, group, data, image=None, expected_label=None):
        _write(root / "imgs" / name, data)
        rows.append(f"../imgs/{name},{label},{group}")
        files[f"imgs/{name}"] = (group or None, expected_label, data, image)

    for i, (name, label, group, expected) in enumerate([("a.png", "1", "p1", 0), ("b.png", "X", "p1", 22),
                                                        ("c.png", "24", "p2", 23), ("g.png", "07", "p3", 6)]):
        image = _image(50 + i)
        add(name, label, group, _png(image), image, expected)
    add("d.png", "0", "p2", _png(_image(60)))  # bad label
    add("e.png", "5", "", _png(_image(61)))  # no group
    add("f.png", "3", "p3", b"\x89PNG\r\n\x1a\n garbage")  # corrupt
    _write(root / "meta" / "labels.csv", ("path,label,group\n" + "\n".join(rows) + "\n").encode())
    return root, files


CSV = {"type": "csv", "subdir": "", "table": "meta/labels.csv", "extensions": EXTENSIONS,
       "group_regex": "_(?P<group>[^_]+)$"}


def test_csv_listing(csv_dataset):
    root, files = csv_dataset
    cand = list_candidates(root, "tab", CSV)
    assert sorted(cand["source"]) == sorted(files)  # relative to the dataset root, not the table
    by_source = cand.set_index("source")
    assert by_source.loc["imgs/a.png", "image_id"] == "tab/p1/a"
    assert by_source.loc["imgs/c.png", "group"] == "p2"
    assert "empty group" in by_source.loc["imgs/e.png", "error"]
    assert pd.isna(by_source.loc["imgs/e.png", "group"])


def test_csv_ingest(csv_dataset):
    root, files = csv_dataset
    cand = list_candidates(root, "tab", CSV)
    meta, images, rejected = _ingest_all(root, cand, n_shards=2)
    assert sorted(list(meta["source"]) + list(rejected["source"])) == sorted(files)
    by_source = meta.set_index("source")
    for source, (group, label, data, image) in files.items():
        if image is None:
            continue
        row = by_source.loc[source]
        assert (row["group"], row["label"]) == (group, label)
        assert row["image_id"] == f"tab/{group}/{Path(source).stem}"
        assert row["source_sha256"] == hashlib.sha256(data).hexdigest()
        np.testing.assert_array_equal(images[row["image_id"]], image)
    reasons = rejected.set_index("source")["reason"]
    assert "not a chromosome class" in reasons["imgs/d.png"]
    assert "empty group" in reasons["imgs/e.png"]
    assert "cannot decode" in reasons["imgs/f.png"]


def test_csv_missing_columns(tmp_path):
    _write(tmp_path / "t.csv", b"path,class\na.png,1\n")
    with pytest.raises(LayoutError, match="group") as info:
        list_candidates(tmp_path, "d", {"type": "csv", "table": "t.csv"})
    assert "t.csv" in str(info.value)


def test_csv_missing_file_is_quarantined(tmp_path):
    _write(tmp_path / "a.png", _png(np.zeros((4, 4), np.uint8)))
    _write(tmp_path / "t.csv", b"path,label,group\na.png,1,g\ngone.png,2,g\n")
    cand = list_candidates(tmp_path, "d", {"type": "csv", "table": "t.csv"})
    meta, _, rejected = ingest_shard(tmp_path, cand, 0, 1, 10**6)
    assert list(meta["source"]) == ["a.png"]
    assert list(rejected["source"]) == ["gone.png"]
    reason = rejected.loc[0, "reason"]
    assert isinstance(reason, str) and ("gone.png" in reason or "no such file" in reason.lower())


# --------------------------------------------------------------------------- whole images: groups, warnings, DICOM


def _dicom(stored: np.ndarray, slope: str, intercept: str, spacing: list[str], bits: int = 12) -> bytes:
    """A single-frame 16-bit MONOCHROME2 DICOM file written by pydicom (implicit VR little endian)."""
    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ImplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "CT", *stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.PixelSpacing = slope, intercept, spacing
    ds.PixelData = stored.astype(np.uint16).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _colour_photo(seed=0, shape=(30, 40)):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 255, (*shape, 3)).astype(np.uint8), (0, 0), 2)


IMAGES_BY_FOLDER = {"type": "images", "subdir": "", "extensions": EXTENSIONS + [".dcm"], "group": "folder",
                    "group_regex": "_(?P<group>[^_]+)$"}


@pytest.fixture
def photo_folders(tmp_path):
    """One folder per slide or patient: a colour JPEG, a 16-bit TIFF, a JPEG libjpeg warns about, an
    unreadable file, a CT slice in a deeper folder, a file outside any folder."""
    root = tmp_path / "photos"
    colour = _colour_photo()
    jpeg = _encode(colour, ".jpg")
    tiff16 = _image(70, (20, 30), np.uint16)
    ok, buf = cv2.imencode(".tif", tiff16, [cv2.IMWRITE_TIFF_RESUNIT, 3, cv2.IMWRITE_TIFF_XDPI, 20000,
                                            cv2.IMWRITE_TIFF_YDPI, 20000])
    assert ok
    warned = _encode(_colour_photo(1), ".jpg")
    ct = np.array([[0, 24, 1024], [2048, 3000, 4095]], np.uint16)
    files = {
        "slideA/IMG_001.jpg": _write(root / "slideA" / "IMG_001.jpg", jpeg),
        "slideB/IMG_001.tif": _write(root / "slideB" / "IMG_001.tif", buf.tobytes()),
        "slideB/IMG_002.jpg": _write(root / "slideB" / "IMG_002.jpg", warned[:-2] + b"\x5a" * 16 + warned[-2:]),
        "slideA/broken.jpg": _write(root / "slideA" / "broken.jpg", b"\xff\xd8\xff\xe0 not really a JPEG" * 4),
        "patient7/series2/slice.dcm": _write(root / "patient7" / "series2" / "slice.dcm",
                                             _dicom(ct, "1", "-1024", ["0.5", "0.25"])),
        "loose.png": _write(root / "loose.png", _png(_image(71))),
    }
    return root, files, {"colour": colour, "tiff16": tiff16, "ct": ct}


def test_images_group_folder_ingest(photo_folders):
    root, files, truth = photo_folders
    cand = list_candidates(root, "ph", IMAGES_BY_FOLDER)
    by_source = cand.set_index("source")
    assert sorted(cand["source"]) == sorted(files)
    assert by_source.loc["slideA/IMG_001.jpg", "group"] == "slideA"
    assert by_source.loc["patient7/series2/slice.dcm", "group"] == "patient7/series2"
    # the same file name in two folders: image_id is the relative path, so no collision
    assert by_source.loc["slideA/IMG_001.jpg", "image_id"] == "ph/slideA/IMG_001"
    assert by_source.loc["slideB/IMG_001.tif", "image_id"] == "ph/slideB/IMG_001"
    assert by_source.loc["patient7/series2/slice.dcm", "image_id"] == "ph/patient7/series2/slice"
    assert "not in a folder" in by_source.loc["loose.png", "error"]
    assert cand["image_id"].is_unique

    meta, images, rejected = _ingest_all(root, cand, n_shards=2)
    assert sorted(list(meta["source"]) + list(rejected["source"])) == sorted(files)
    reasons = rejected.set_index("source")["reason"]
    assert set(reasons.index) == {"slideA/broken.jpg", "loose.png"}
    assert "cannot decode" in reasons["slideA/broken.jpg"] and "not in a folder" in reasons["loose.png"]
    rows = meta.set_index("source")
    assert meta["label"].isna().all()

    photo = rows.loc["slideA/IMG_001.jpg"]
    assert photo["converted_from"] == "rgb" and photo["decode_warning"] == "" and np.isnan(photo["pixel_size_um"])
    grey = images[photo["image_id"]]
    assert grey.dtype == np.uint8 and grey.shape == (30, 40)  # native size
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(files["slideA/IMG_001.jpg"], np.uint8), cv2.IMREAD_COLOR),
                            cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(grey, expected)

    tiff = rows.loc["slideB/IMG_001.tif"]
    assert tiff["converted_from"] == "" and tiff["pixel_size_um"] == pytest.approx(0.5)
    assert images[tiff["image_id"]].dtype == np.uint16
    np.testing.assert_array_equal(images[tiff["image_id"]], truth["tiff16"])

    warned = rows.loc["slideB/IMG_002.jpg"]  # decodes with a libjpeg warning: kept, the warning recorded
    assert re.fullmatch(r"Corrupt JPEG data: \d+ extraneous bytes before marker 0xd9", warned["decode_warning"])
    assert images[warned["image_id"]].shape == (30, 40)

    ct = rows.loc["patient7/series2/slice.dcm"]
    image = images[ct["image_id"]]
    assert image.dtype == np.uint16 and ct["group"] == "patient7/series2"
    np.testing.assert_array_equal(image, truth["ct"])  # HU + 1024
    assert (ct["rescale_slope"], ct["rescale_intercept"]) == (1.0, -1024.0)
    np.testing.assert_array_equal(image * ct["rescale_slope"] + ct["rescale_intercept"], truth["ct"] - 1024.0)
    assert ct["pixel_size_um"] == pytest.approx(375.0)  # mean of 0.5 mm and 0.25 mm
    others = rows.drop(index="patient7/series2/slice.dcm")
    assert (others["rescale_slope"] == 1.0).all() and (others["rescale_intercept"] == 0.0).all()


def test_images_manifest_columns_through_the_workflow_path(photo_folders, tmp_path, caplog):
    root, files, _ = photo_folders
    layout = dict(IMAGES_BY_FOLDER, subdir="photos")
    inventory = tmp_path / "out" / "inventory.parquet"
    ingest.run_inventory(root.parent, "ph", layout, 1, inventory)
    with caplog.at_level("WARNING", logger="karyosr.dataset.ingest"):
        ingest.run(root.parent, inventory, layout, 0, 1, 10**8, tmp_path / "out" / "000.parquet",
                   tmp_path / "out" / "r000.parquet")
    meta = shards.read_shard_meta(tmp_path / "out" / "000.parquet").set_index("source")
    assert meta["pixel_size_um"].dtype == np.float64 and meta["rescale_slope"].dtype == np.float64
    assert np.isnan(meta.loc["slideA/IMG_001.jpg", "pixel_size_um"])
    assert meta.loc["slideA/IMG_001.jpg", "decode_warning"] == ""
    assert "extraneous bytes" in meta.loc["slideB/IMG_002.jpg", "decode_warning"]
    assert "kept slideB/IMG_002.jpg, decoded with a warning: Corrupt JPEG data" in caplog.text


def test_images_group_folder_same_path_other_extension_is_a_duplicate(tmp_path):
    _write(tmp_path / "s1" / "a.png", _png(_image(1)))
    _write(tmp_path / "s1" / "a.tif", _encode(_image(2), ".tif"))
    cand = list_candidates(tmp_path, "d", IMAGES_BY_FOLDER)
    assert set(cand["image_id"]) == {"d/s1/a"}
    assert sum(isinstance(e, str) and "duplicate image_id" in e for e in cand["error"]) == 1


def test_images_group_regex_on_the_relative_path(tmp_path):
    for rel in ("slideA/IMG_001.png", "slideB/IMG_001.png", "slideB/deep/P_9.png", "IMG_7.png"):
        _write(tmp_path / rel, _png(_image(3)))
    layout = {**IMAGES_BY_FOLDER, "group": "regex", "group_regex": r"^(?P<group>slide[^/]+)/"}
    cand = list_candidates(tmp_path, "d", layout).set_index("source")
    assert cand.loc["slideA/IMG_001.png", "group"] == "slideA" and cand.loc["slideB/deep/P_9.png", "group"] == "slideB"
    assert cand.loc["slideA/IMG_001.png", "image_id"] == "d/slideA/IMG_001"  # <group>/<stem> as before
    assert cand.loc["slideB/deep/P_9.png", "image_id"] == "d/slideB/P_9"
    error = cand.loc["IMG_7.png", "error"]
    assert "'IMG_7'" in error and "does not match dataset.layout.group_regex" in error
    # a pattern on the file name still works (searched, so it may match the end of the path)
    stem = list_candidates(tmp_path, "d", {**layout, "group_regex": "_(?P<group>[^_/]+)$"}).set_index("source")
    assert stem.loc["slideA/IMG_001.png", "group"] == "001" and stem.loc["IMG_7.png", "group"] == "7"
    assert stem.loc["slideB/deep/P_9.png", "image_id"] == "d/9/P_9"


def test_images_group_regex_collision_falls_back_to_the_path(tmp_path):
    for rel in ("slideA/IMG_001.png", "slideA/run2/IMG_001.png", "slideA/IMG_002.png"):
        _write(tmp_path / rel, _png(_image(4)))
    layout = {**IMAGES_BY_FOLDER, "group": "regex", "group_regex": r"(?P<group>slide[A-Z])"}
    cand = list_candidates(tmp_path, "d", layout).set_index("source")
    assert cand["error"].isna().all() and cand["image_id"].is_unique
    assert cand.loc["slideA/run2/IMG_001.png", "image_id"] == "d/slideA/run2/IMG_001"
    assert cand.loc["slideA/IMG_001.png", "image_id"] == "d/slideA/IMG_001"
    assert cand.loc["slideA/IMG_002.png", "image_id"] == "d/slideA/IMG_002"
    assert set(cand["group"]) == {"slideA"}


def test_images_stem_regex_of_class_folders_unchanged(class_folders):
    root, _ = class_folders  # class_folders still matches the stem: '1/1_1_...' must not see the folder
    cand = list_candidates(root, "gband", {**CLASS_FOLDERS, "group_regex": r"^(?P<group>[^_]+)_"}).set_index("source")
    assert cand.loc["X/X_1_56131_115966_7.tiff", "group"] == "X"


def test_dicom_quarantined_without_pydicom(tmp_path, monkeypatch):
    _write(tmp_path / "p1" / "a.dcm", _dicom(np.zeros((3, 3), np.uint16), "1", "0", ["1", "1"]))
    _write(tmp_path / "p1" / "b.png", _png(_image(5)))
    monkeypatch.setitem(sys.modules, "pydicom", None)
    cand = list_candidates(tmp_path, "d", IMAGES_BY_FOLDER)
    meta, _, rejected = ingest_shard(tmp_path, cand, 0, 1, 10**6)
    assert list(meta["source"]) == ["p1/b.png"]
    reason = rejected.set_index("source").loc["p1/a.dcm", "reason"]
    assert reason == "install karyosr[dicom] (pydicom) to read DICOM files"


def test_config_layout_group():
    from karyosr.config import ConfigError, validate

    config = validate({})
    assert config["dataset"]["layout"]["group"] == "regex" and ".dcm" in config["dataset"]["layout"]["extensions"]
    for layout in ({"type": "class_folders", "group": "folder"},
                   {"type": "images", "group": "folder", "table": "t.csv"}):
        with pytest.raises(ConfigError, match="dataset.layout.group"):
            validate({"dataset": {"layout": layout}})
    with pytest.raises(ConfigError, match="dataset.layout.group"):
        validate({"dataset": {"layout": {"type": "images", "group": "slide"}}})  # not in the enum
    # group_regex is not compiled where it is not used
    bad_regex = {"type": "images", "group": "folder", "group_regex": "(unclosed"}
    with pytest.raises(ConfigError) as info:
        validate({"dataset": {"layout": {**bad_regex, "group": "regex"}}, "classify": {"experiments": []}})
    assert "group_regex" in str(info.value) and "not a valid regex" in str(info.value)
    config = validate({"dataset": {"layout": bad_regex}, "classify": {"experiments": []}})
    assert config["dataset"]["layout"]["group"] == "folder"
