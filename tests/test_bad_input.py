"""Bad input, end to end: what a scanner folder really contains, and what each stage does with it.

Every case feeds exactly that input and checks the one acceptable outcome: the bad item is
quarantined (or rejected) with a reason while every good item goes on, or the run stops with a
clear error naming the file, key or value before any work is wasted. Case numbers follow
docs/bad-input.md. The stage functions run on real files on disk; a shared tiny workflow run
(`workflow` fixture) checks the same dataset through Snakemake.

Archives and downloads (cases 6-8) are in test_hostile_archives.py; killed jobs and untrusted
checkpoints (13-16) in test_faults_trust.py.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import re
import struct
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from karyosr.config import ConfigError, validate
from karyosr.dataset import crop_filter, ingest, split
from karyosr.dataset.split import SplitError
from karyosr.io import shards
from karyosr.io.images import ImageRejected, decode_grayscale
from workflow_helpers import TINY_CONFIG, snakemake, write_config

EXTENSIONS = [".tif", ".tiff", ".png", ".bmp", ".jpg", ".jpeg"]
CLASS_FOLDERS = {"type": "class_folders", "subdir": "", "extensions": EXTENSIONS,
                 "group_regex": "_(?P<group>[^_]+)$"}
CROP_PARAMS = {"target_size": 48, "polarity": "auto", "threshold": "otsu", "margin": 2,
               "min_component_fraction": 0.1, "min_foreground_px": 40, "detail_sigma": 1.0, "min_detail": 1.0,
               "adaptive_crop": True}
MAX_PIXELS = 20_000  # the dataset's good images are 90 x 70 = 6,300 pixels; the "huge" one 40,000
N_SHARDS = 2
UNDECODABLE = "cannot decode: not an image, or corrupt or truncated"
FLAT = "no foreground: the image is flat"


# --------------------------------------------------------------------------- building bad files


def chromosome(seed: int, dtype=np.uint8, shape=(90, 70)) -> np.ndarray:
    """A banded dark rod on a light, slightly noisy background: passes crop_filter."""
    rng = np.random.default_rng(seed)
    image = np.full(shape, 220.0)
    length = 40 + seed % 9
    y0 = 20 + seed % 7
    bands = 70 + 40 * ((np.arange(length) // 4) % 2)
    image[y0 : y0 + length, 30:40] = bands[:, None]
    image += rng.normal(0, 2, shape)
    scale = 257.0 if dtype == np.uint16 else 1.0
    return np.clip(np.rint(image * scale), 0, np.iinfo(dtype).max).astype(dtype)


def encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok, (image.dtype, image.shape, ext)
    return buf.tobytes()


def tiff_ifd_first(image: np.ndarray) -> bytes:
    """An uncompressed little-endian TIFF with its directory before the pixels, as many scanners
    write it: cut in the pixel data, the header still announces a complete image."""
    h, w = image.shape
    data = image.astype(image.dtype.newbyteorder("<")).tobytes()
    short = [(256, w), (257, h), (258, image.dtype.itemsize * 8), (259, 1), (262, 1), (277, 1), (278, h)]
    count = len(short) + 2
    pixels_at = 8 + 2 + 12 * count + 4
    entries = [struct.pack("<HHIHH", tag, 3, 1, value, 0) for tag, value in short]
    entries += [struct.pack("<HHII", 273, 4, 1, pixels_at), struct.pack("<HHII", 279, 4, 1, len(data))]
    entries.sort(key=lambda e: struct.unpack("<H", e[:2])[0])
    return b"II*\x00" + struct.pack("<IH", 8, count) + b"".join(entries) + struct.pack("<I", 0) + data


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def write(path: Path, data: bytes) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _bgr(gray: np.ndarray) -> np.ndarray:
    # Distinct channels, so that taking one channel instead of the luminance would show.
    return np.dstack([gray, (gray * 0.5).astype(gray.dtype), np.full_like(gray, 30)])


def build_scanner_folder(root: Path) -> dict:
    """A class_folders dataset of good and bad files, in a path with spaces and quotes (case 16).

    Returns {"good": {source: (image the shard must hold, converted_from)}, "flat": [...],
    "quarantined": {source: reason fragment}}.
    """
    good, flat, quarantined = {}, [], {}
    for i, (source, ext) in enumerate([("1/one_c1", ".png"), ("1/one_c2", ".png"), ("2/two_c1", ".bmp"),
                                       ("2/two_c2", ".tif"), ("X/ex_c1", ".png"), ("24/why_c2", ".png")]):
        image = chromosome(i)
        write(root / (source + ext), encode(image, ext))
        good[source + ext] = (image, "")
    # case 3: 16-bit stays 16-bit; colour becomes BT.601 luminance, recorded in converted_from
    for i, source in enumerate(["3/deep_c1.png", "3/deep_c2.tif"]):
        image = chromosome(10 + i, np.uint16)
        write(root / source, encode(image, Path(source).suffix))
        good[source] = (image, "")
    colour = _bgr(chromosome(20))
    write(root / "4/colour_c1.png", encode(colour, ".png"))
    good["4/colour_c1.png"] = (cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY), "rgb")
    rgba = np.dstack([_bgr(chromosome(21)), np.full((90, 70), 128, np.uint8)])
    write(root / "4/alpha_c2.png", encode(rgba, ".png"))
    good["4/alpha_c2.png"] = (cv2.cvtColor(rgba, cv2.COLOR_BGRA2GRAY), "rgba")
    # case 12: decodable but empty (no chromosome); cell c3 has nothing else, so the filters
    # leave two cells for three splits (case 11)
    write(root / "5/flat_c3.png", encode(np.full((90, 70), 200, np.uint8), ".png"))
    write(root / "6/flatdeep_c3.tif", encode(np.full((90, 70), 40000, np.uint16), ".tif"))
    flat += ["5/flat_c3.png", "6/flatdeep_c3.tif"]
    # case 1: corrupt and truncated
    write(root / "7/corrupt_c1.png", np.random.default_rng(7).bytes(3000))
    write(root / "7/truncpng_c1.png", half(encode(chromosome(30), ".png")))
    write(root / "7/truncbmp_c2.bmp", half(encode(chromosome(31), ".bmp")))
    write(root / "7/trunctif_c1.tif", half(tiff_ifd_first(chromosome(32, np.uint16))))
    for source in ["7/corrupt_c1.png", "7/truncpng_c1.png", "7/truncbmp_c2.bmp", "7/trunctif_c1.tif"]:
        quarantined[source] = UNDECODABLE
    # case 2: zero bytes
    write(root / "7/empty_c2.png", b"")
    quarantined["7/empty_c2.png"] = "empty file (0 bytes)"
    # case 4: over ingest.max_pixels (a valid image that would decode fine)
    write(root / "8/huge_c1.png", encode(np.full((200, 200), 200, np.uint8), ".png"))
    quarantined["8/huge_c1.png"] = f"200x200 = 40000 pixels exceeds ingest.max_pixels {MAX_PIXELS}"
    # case 5: perfectly good images under class names that do not exist
    write(root / "25/label25_c1.png", encode(chromosome(40), ".png"))
    write(root / "Z/labelz_c2.png", encode(chromosome(41), ".png"))
    quarantined["25/label25_c1.png"] = "label '25' is not a chromosome class (expected 1-22, X or 23, Y or 24)"
    quarantined["Z/labelz_c2.png"] = "label 'Z' is not a chromosome class"
    # not an image extension: ignored, never counted
    write(root / "notes.txt", b"scanner session 12\n")
    return {"good": good, "flat": flat, "quarantined": quarantined}


def ingest_stage(root: Path, out: Path, dataset="scanner", layout=CLASS_FOLDERS, max_pixels=MAX_PIXELS):
    """inventory + every ingest shard + manifest and rejected table, as the rules run them."""
    ingest.run_inventory(root, dataset, layout, N_SHARDS, out / "inventory.parquet")
    for shard in range(N_SHARDS):
        ingest.run(root, out / "inventory.parquet", layout, shard, N_SHARDS, max_pixels,
                   out / f"shards/{shard:03d}.parquet", out / f"rejected/{shard:03d}.parquet")
    paths = [out / f"shards/{s:03d}.parquet" for s in range(N_SHARDS)]
    manifest = shards.build_manifest(paths, out / "manifest.parquet")
    rejected = shards.concat_tables(out / f"rejected/{s:03d}.parquet" for s in range(N_SHARDS))
    return manifest, rejected


def read_images(manifest: pd.DataFrame, base: Path) -> dict[str, np.ndarray]:
    """source -> pixels as stored in the shards."""
    out = {}
    for shard, rows in manifest.groupby("shard"):
        meta, images = shards.read_shard(base / shard)
        by_id = dict(zip(meta["image_id"], images))
        out.update((r.source, by_id[r.image_id]) for r in rows.itertuples())
    return out


# --------------------------------------------------------------------------- ingest (cases 1-5)


@pytest.fixture(scope="module")
def scanner(tmp_path_factory):
    base = tmp_path_factory.mktemp("scanner")
    root = base / "data dir" / "it's \"here\""
    expected = build_scanner_folder(root)
    return root, expected


@pytest.fixture(scope="module")
def ingested(scanner, tmp_path_factory):
    """The ingest stage on the scanner folder, with a spy on the decoder (case 4)."""
    root, expected = scanner
    out = tmp_path_factory.mktemp("ingest")
    decoded = []
    real_imdecode = cv2.imdecode

    def spy(buf, flags):
        decoded.append(hashlib.sha256(np.asarray(buf).tobytes()).hexdigest())
        return real_imdecode(buf, flags)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cv2, "imdecode", spy)
        manifest, rejected = ingest_stage(root, out)
    return manifest, rejected, out, decoded


def _reasons(rejected: pd.DataFrame) -> dict[str, str]:
    return dict(zip(rejected["source"], rejected["reason"]))


def test_every_file_is_ingested_or_quarantined_never_lost(scanner, ingested):
    root, expected = scanner
    manifest, rejected, _, _ = ingested
    assert sorted(manifest["source"]) == sorted([*expected["good"], *expected["flat"]])
    assert sorted(rejected["source"]) == sorted(expected["quarantined"])
    assert set(rejected["stage"]) == {"ingest"}
    assert rejected["image_id"].str.startswith("scanner/").all()
    on_disk = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix in EXTENSIONS)
    assert sorted([*manifest["source"], *rejected["source"]]) == on_disk


@pytest.mark.parametrize("source", ["7/corrupt_c1.png", "7/truncpng_c1.png", "7/truncbmp_c2.bmp",
                                    "7/trunctif_c1.tif", "7/empty_c2.png", "8/huge_c1.png",
                                    "25/label25_c1.png", "Z/labelz_c2.png"])
def test_bad_file_quarantined_with_its_reason(scanner, ingested, source):
    """Cases 1, 2, 4, 5: corrupt, truncated, empty, oversized, unknown class."""
    _, expected = scanner
    reason = _reasons(ingested[1])[source]
    assert expected["quarantined"][source] in reason
    assert "Traceback" not in reason


def test_good_images_of_the_same_dataset_go_on_unchanged(scanner, ingested):
    """Case 1: the good images next to the bad ones are ingested bit for bit, with their hash."""
    root, expected = scanner
    manifest, _, out, _ = ingested
    stored = read_images(manifest, out)
    for source, (image, converted) in expected["good"].items():
        if source.endswith((".jpg", ".jpeg")):
            continue
        np.testing.assert_array_equal(stored[source], image, err_msg=source)
    row = manifest.set_index("source").loc["1/one_c1.png"]
    assert row["source_sha256"] == hashlib.sha256((root / "1/one_c1.png").read_bytes()).hexdigest()
    assert row["image_id"] == "scanner/c1/one_c1" and row["class_name"] == "1"


def test_16_bit_and_colour_follow_the_documented_rule(scanner, ingested):
    """Case 3: uint16 stays uint16; RGB/RGBA become BT.601 luminance, marked in converted_from."""
    _, expected = scanner
    manifest, _, out, _ = ingested
    by_source = manifest.set_index("source")
    stored = read_images(manifest, out)
    for source in ["3/deep_c1.png", "3/deep_c2.tif"]:
        assert by_source.loc[source, "dtype"] == "uint16"
        assert stored[source].dtype == np.uint16
        assert by_source.loc[source, "converted_from"] == ""
    assert by_source.loc["4/colour_c1.png", "converted_from"] == "rgb"
    assert by_source.loc["4/alpha_c2.png", "converted_from"] == "rgba"
    for source in ["4/colour_c1.png", "4/alpha_c2.png"]:
        assert stored[source].ndim == 2 and stored[source].dtype == np.uint8
        np.testing.assert_array_equal(stored[source], expected["good"][source][0])
    assert (by_source.drop(index=["4/colour_c1.png", "4/alpha_c2.png"])["converted_from"] == "").all()


def test_oversized_image_is_never_decoded(scanner, ingested):
    """Case 4: the header check refuses the file before cv2.imdecode sees it."""
    root, _ = scanner
    decoded = ingested[3]
    assert hashlib.sha256((root / "8/huge_c1.png").read_bytes()).hexdigest() not in decoded
    assert hashlib.sha256((root / "1/one_c1.png").read_bytes()).hexdigest() in decoded  # the spy works


@pytest.mark.parametrize("dtype, ext", [(np.uint8, ".png"), (np.uint8, ".bmp"), (np.uint8, ".tif"),
                                        (np.uint8, ".jpg"), (np.uint16, ".png"), (np.uint16, ".tif")])
def test_oversized_image_of_any_format_is_not_decoded(monkeypatch, dtype, ext):
    """Case 4, unit level: every format whose header we can read is refused undecoded."""
    data = encode(np.zeros((300, 400), dtype), ext)
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("imdecode called on an oversized image"))
    with pytest.raises(ImageRejected, match=r"300x400 = 120000 pixels exceeds ingest.max_pixels 100000"):
        decode_grayscale(data, 100_000)


@pytest.mark.parametrize("make", [lambda: half(encode(chromosome(1), ".png")),
                                  lambda: half(encode(chromosome(1), ".bmp")),
                                  lambda: half(encode(chromosome(1), ".tif")),
                                  lambda: half(tiff_ifd_first(chromosome(1))),
                                  lambda: tiff_ifd_first(chromosome(1))[:-10],
                                  lambda: half(encode(chromosome(1, np.uint16), ".png")),
                                  lambda: half(encode(chromosome(1), ".jpg")),
                                  lambda: encode(chromosome(1), ".png")[:-12]],
                         ids=["png", "bmp", "tif", "tif-ifd-first", "tif-last-bytes", "png16", "jpg",
                              "png-no-iend"])
def test_truncated_file_is_never_taken_for_complete(make):
    """Case 1, unit level: half a file (or one missing its last bytes) is refused, not padded."""
    with pytest.raises(ImageRejected, match="cannot decode"):
        decode_grayscale(make(), 10**8)


def test_quarantine_is_logged_with_file_and_reason(scanner, tmp_path, caplog):
    """The ingest log (results/logs/ingest/NNN.log) names every quarantined file and why."""
    root, expected = scanner
    with caplog.at_level(logging.WARNING, logger="karyosr.dataset.ingest"):
        ingest_stage(root, tmp_path)
    text = caplog.text
    for source, reason in expected["quarantined"].items():
        assert f"quarantined {source}: {reason}" in text


def test_csv_labels_outside_the_24_classes(tmp_path):
    """Case 5 for the csv layout: labels '0' and 'abc' are quarantined with the label named."""
    root = tmp_path / "csvset"
    rows = ["path,label,group"]
    for i, label in enumerate(["1", "X", "0", "abc", "24", "25"]):
        write(root / "img" / f"im{i}.png", encode(chromosome(i), ".png"))
        rows.append(f"img/im{i}.png,{label},cell{i % 2}")
    write(root / "labels.csv", ("\n".join(rows) + "\n").encode())
    layout = {**CLASS_FOLDERS, "type": "csv", "table": "labels.csv"}
    manifest, rejected = ingest_stage(root, tmp_path / "out", dataset="tab", layout=layout)
    assert sorted(manifest["source"]) == ["img/im0.png", "img/im1.png", "img/im4.png"]
    assert sorted(manifest["class_name"]) == ["1", "X", "Y"]
    reasons = _reasons(rejected)
    assert sorted(reasons) == ["img/im2.png", "img/im3.png", "img/im5.png"]
    assert "label '0' is not a chromosome class" in reasons["img/im2.png"]
    assert "label 'abc' is not a chromosome class" in reasons["img/im3.png"]
    assert "label '25' is not a chromosome class" in reasons["img/im5.png"]


@pytest.mark.parametrize("layout", ["class_folders", "bioimlab"])
def test_file_name_that_is_not_utf8_is_quarantined_not_fatal(tmp_path, layout):
    """A name written under another encoding (latin-1 'café') is quarantined with a printable
    name; before the fix it stopped the whole inventory with a UnicodeEncodeError."""
    root = tmp_path / "ds"
    if layout == "class_folders":
        write(root / "1/good_c1.png", encode(chromosome(1), ".png"))
        folder, name = root / "2", b"caf\xe9_c1.png"
        config = CLASS_FOLDERS
    else:
        write(root / "single_chromosomes/cell1/cell1 1a.bmp", encode(chromosome(1), ".bmp"))
        folder, name = root / "single_chromosomes/cell2", b"cell2 2a\xe9.bmp"
        config = {**CLASS_FOLDERS, "type": "bioimlab"}
    folder.mkdir(parents=True)
    with open(os.fsencode(folder) + b"/" + name, "wb") as fh:
        fh.write(encode(chromosome(2), ".bmp"))
    manifest, rejected = ingest_stage(root, tmp_path / "out", layout=config)
    assert len(manifest) == 1
    assert len(rejected) == 1
    assert "\\xe9" in rejected.loc[0, "source"]
    assert "is not valid UTF-8; rename the file" in rejected.loc[0, "reason"]


@pytest.mark.parametrize("table, content, expected", [
    ("missing.csv", None, "the table named by dataset.layout.table does not exist"),
    ("latin1.csv", "path,label,group\nimg/caf\xe9.png,1,g1\n".encode("latin-1"), "cannot read the table"),
    ("empty.csv", b"", "cannot read the table"),
])
def test_csv_table_that_cannot_be_read_is_a_clear_error(tmp_path, table, content, expected):
    if content is not None:
        write(tmp_path / table, content)
    with pytest.raises(ingest.LayoutError) as info:
        ingest.run_inventory(tmp_path, "d", {**CLASS_FOLDERS, "type": "csv", "table": table}, 1, tmp_path / "inv.parquet")
    assert str(tmp_path / table) in str(info.value) and expected in str(info.value)
    assert not (tmp_path / "inv.parquet").exists()


# --------------------------------------------------------------------------- crop_filter (case 12)


@pytest.fixture(scope="module")
def cropped(ingested):
    _, _, ingest_out, _ = ingested
    out = ingest_out / "crop"
    for shard in range(N_SHARDS):
        crop_filter.run(ingest_out / f"shards/{shard:03d}.parquet", CROP_PARAMS,
                        out / f"shards/{shard:03d}.parquet", out / f"rejected/{shard:03d}.parquet")
    manifest = shards.build_manifest([out / f"shards/{s:03d}.parquet" for s in range(N_SHARDS)],
                                     out / "manifest.parquet")
    shards.write_table(out / "manifest.parquet", manifest)
    rejected = shards.concat_tables(out / f"rejected/{s:03d}.parquet" for s in range(N_SHARDS))
    return manifest, rejected, out


def test_flat_image_rejected_with_reason_good_ones_go_on(scanner, cropped):
    _, expected = scanner
    manifest, rejected, _ = cropped
    assert sorted(rejected["source"]) == sorted(expected["flat"])
    assert set(rejected["stage"]) == {"crop_filter"}
    for reason in rejected["reason"]:
        assert reason.startswith(FLAT) and "contrast 0 grey levels" in reason
    assert sorted(manifest["source"]) == sorted(expected["good"])
    assert (manifest["height"] == CROP_PARAMS["target_size"]).all()
    assert set(manifest.set_index("source").loc[["3/deep_c1.png", "3/deep_c2.tif"], "dtype"]) == {"uint16"}


@pytest.mark.parametrize("image, reason", [
    (np.full((60, 50), 17, np.uint8), "no foreground: the image is flat (contrast 0 grey levels)"),
    (np.full((60, 50), 3000, np.uint16), "no foreground: the image is flat (contrast 0 grey levels)"),
    (np.random.default_rng(0).integers(100, 105, (60, 50)).astype(np.uint8), "no foreground: the image is flat"),
    (np.pad(np.full((3, 3), 30, np.uint8), 20, constant_values=220), "below crop_filter.min_foreground_px 40"),
    (np.zeros((1, 1), np.uint8), "no foreground: the image is flat"),
])
def test_empty_images_rejected_by_crop_filter_run(tmp_path, image, reason):
    """Case 12, stage level: a shard with an empty image and a good one; the good one goes on."""
    meta = pd.DataFrame({"image_id": ["d/c/empty", "d/c/good"], "source": ["empty.png", "good.png"],
                         "label": pd.array([0, 1], dtype="Int8")})
    shards.write_shard(tmp_path / "in.parquet", meta, [image, chromosome(3)])
    crop_filter.run(tmp_path / "in.parquet", CROP_PARAMS, tmp_path / "out.parquet", tmp_path / "rej.parquet")
    kept, _ = shards.read_shard(tmp_path / "out.parquet")
    rejected = shards.read_table(tmp_path / "rej.parquet")
    assert list(kept["image_id"]) == ["d/c/good"]
    assert list(rejected["source"]) == ["empty.png"]
    assert reason in rejected.loc[0, "reason"]


# --------------------------------------------------------------------------- split (case 11)


def test_split_emptied_by_the_filters_names_split_and_counts(cropped, tmp_path):
    """After crop_filter only cells c1 and c2 remain: three splits cannot all get one."""
    _, _, out = cropped
    with pytest.raises(SplitError) as info:
        split.run(out / "manifest.parquet", {"train": 0.5, "val": 0.25, "test": 0.25}, 0, tmp_path / "split.parquet")
    message = str(info.value)
    assert re.search(r"split '(train|val|test)' is empty", message)
    assert "over 2 groups and 10 images" in message
    assert re.search(r"train=\d+, val=\d+, test=\d+", message)
    assert not (tmp_path / "split.parquet").exists()


def test_split_emptied_by_the_fractions(tmp_path):
    rows = [{"image_id": f"d/g{g}/{i}", "group": f"g{g}", "label": i % 24} for g in range(3) for i in range(46)]
    manifest = pd.DataFrame(rows).astype({"label": "Int8"})
    shards.write_table(tmp_path / "in.parquet", manifest)
    with pytest.raises(SplitError, match=r"split 'val' is empty: .* over 3 groups and 138 images gave "
                                         r"train=138, val=0, test=0; add data, or change split.fractions"):
        split.run(tmp_path / "in.parquet", {"train": 0.9, "val": 0.05, "test": 0.05}, 0, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_split_with_nothing_left(tmp_path):
    shards.write_table(tmp_path / "in.parquet", pd.DataFrame({"image_id": [], "group": [], "label": []}))
    with pytest.raises(SplitError, match="no images left after crop_filter"):
        split.run(tmp_path / "in.parquet", {"train": 0.7, "val": 0.15, "test": 0.15}, 0, tmp_path / "out.parquet")


# --------------------------------------------------------------------------- config (case 9)


def _tiny(**changes) -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        node[last] = value
    return config


def _with_profile_scale(scale):
    config = _tiny()
    config["degrade"]["profiles"][0]["scale"] = scale
    return config


def _with_arch(arch):
    config = _tiny()
    config["sr"]["models"][0]["arch"] = arch
    return config


BAD_CONFIGS = {
    "unknown_key": (_tiny(**{"crop_filter.target_sise": 64}),
                    r"config key crop_filter: Additional properties are not allowed \('target_sise' was unexpected\)"),
    "unknown_top_key": (_tiny(shard=3), r"config key \(top level\): Additional properties .*'shard' was unexpected"),
    "negative_scale": (_with_profile_scale(-2), r"config key degrade\.profiles\.0\.scale: -2 is not one of"),
    "fractions_sum": (_tiny(**{"split.fractions": {"train": 0.7, "val": 0.2, "test": 0.2}}),
                      r"config key split\.fractions: fractions .* sum to 1\.1, expected 1"),
    "unknown_arch": (_with_arch("srgann"), r"config key sr\.models\.0\.arch: 'srgann' is not one of"),
    "max_pixels_zero": (_tiny(**{"ingest.max_pixels": 0}),
                        r"config key ingest\.max_pixels: 0 is less than the minimum of 1"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_config_error_names_the_key(case):
    config, pattern = BAD_CONFIGS[case]
    with pytest.raises(ConfigError) as info:
        validate(copy.deepcopy(config))
    assert re.search(pattern, str(info.value)), str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unknown_key", "negative_scale", "fractions_sum", "unknown_arch"])
def test_config_error_stops_the_workflow_before_any_job(tmp_path, case):
    """Through Snakemake (-n): the parse fails with the key in the message; nothing is created."""
    config, pattern = BAD_CONFIGS[case]
    path = write_config(tmp_path, config, "bad.yaml")
    result = snakemake(tmp_path, "-n", "--configfile", str(path), check=False)
    output = result.stdout + result.stderr  # a dry run prints its errors on stdout
    assert result.returncode != 0
    assert "ConfigError" in output and re.search(pattern, output), output[-3000:]
    assert "Traceback" not in output
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_config_error_stops_a_real_run_before_any_job(tmp_path):
    config, pattern = BAD_CONFIGS["unknown_key"]
    path = write_config(tmp_path, config, "bad.yaml")
    result = snakemake(tmp_path, "--configfile", str(path), check=False)
    assert result.returncode != 0 and re.search(pattern, result.stderr), result.stderr[-3000:]
    assert not (tmp_path / "results").exists()
    assert "Finished job" not in result.stdout + result.stderr


# --------------------------------------------------------------------------- balance (case 10)


def _balance_set(counts: dict[int, int], seed=0):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, label) for label, n in counts.items()]).astype(np.int64)
    images = rng.integers(0, 255, (len(labels), 8, 8)).astype(np.uint8)
    ids = np.array([f"d/g/{i}" for i in range(len(labels))])
    return images, labels, ids


def test_smote_with_a_class_smaller_than_k_neighbors_plus_one(caplog):
    """Case 10a: class 22 (X) has 3 training images, k_neighbors is 5: k is lowered, with a
    warning, and the class is grown from its own images only."""
    balance = pytest.importorskip("karyosr.classify.balance")
    pytest.importorskip("imblearn")
    images, labels, ids = _balance_set({0: 10, 1: 10, 2: 10, 22: 3})
    with caplog.at_level(logging.WARNING, logger="karyosr.classify.balance"):
        out_images, out_labels, out_ids, synthetic, parents = balance.balance_split(
            images, labels, ids, "smote", k_neighbors=5, seed=0)
    assert "k_neighbors lowered from 5 to 2" in caplog.text
    assert (out_labels == 22).sum() == 10
    assert synthetic.sum() == 7 and not synthetic[: len(labels)].any()
    x_ids = set(ids[labels == 22])
    for row in np.flatnonzero(synthetic):
        assert set(parents[row]) <= x_ids
    np.testing.assert_array_equal(out_images[: len(labels)], images)  # real images untouched


def test_smote_with_a_class_of_one_image(caplog):
    """Case 10b: SMOTE cannot interpolate a class of one: it stays as it is, with a warning that
    names the class; the other classes are still balanced and nothing is dropped."""
    balance = pytest.importorskip("karyosr.classify.balance")
    pytest.importorskip("imblearn")
    images, labels, ids = _balance_set({0: 10, 1: 10, 2: 10, 21: 4, 23: 1})
    with caplog.at_level(logging.WARNING, logger="karyosr.classify.balance"):
        _, out_labels, out_ids, synthetic, _ = balance.balance_split(images, labels, ids, "smote", k_neighbors=5)
    assert "class Y has 1 training image(s)" in caplog.text
    assert (out_labels == 23).sum() == 1  # kept, not dropped, not invented
    assert (out_labels == 21).sum() == 10
    assert set(ids) <= set(out_ids)


# --------------------------------------------------------------------------- the workflow (1-5, 11, 12, 16)


@pytest.fixture(scope="module")
def workflow(scanner, tmp_path_factory):
    """One tiny run on the scanner folder (a path with spaces and quotes) up to crop_filter."""
    root, expected = scanner
    workdir = tmp_path_factory.mktemp("bad_input_run")
    config = copy.deepcopy(TINY_CONFIG)
    config["dataset"] = {"name": "scanner", "source": {"type": "path", "path": str(root)},
                         "layout": {"type": "class_folders"}}
    config["ingest"] = {"max_pixels": MAX_PIXELS}
    path = write_config(workdir, config)
    targets = ["results/ingest/manifest.parquet", "results/ingest/rejected.parquet",
               "results/crop_filter/manifest.parquet", "results/crop_filter/rejected.parquet"]
    snakemake(workdir, *targets, "--configfile", str(path))
    return workdir, path, expected


def _results(workdir, rel):
    return shards.read_table(workdir / "results" / rel)


@pytest.mark.slow
def test_workflow_ingest_quarantines_bad_files_and_keeps_good(workflow):
    workdir, _, expected = workflow
    manifest = _results(workdir, "ingest/manifest.parquet")
    rejected = _results(workdir, "ingest/rejected.parquet")
    assert sorted(manifest["source"]) == sorted([*expected["good"], *expected["flat"]])
    reasons = _reasons(rejected)
    assert sorted(reasons) == sorted(expected["quarantined"])
    for source, fragment in expected["quarantined"].items():
        assert fragment in reasons[source]
    by_source = manifest.set_index("source")
    assert by_source.loc["4/colour_c1.png", "converted_from"] == "rgb"
    assert by_source.loc["4/alpha_c2.png", "converted_from"] == "rgba"
    assert by_source.loc["3/deep_c2.tif", "dtype"] == "uint16"
    logs = "".join(p.read_text() for p in sorted((workdir / "results/logs/ingest").glob("0*.log")))
    for source, fragment in expected["quarantined"].items():
        assert f"quarantined {source}: {fragment}" in logs


@pytest.mark.slow
def test_workflow_crop_filter_rejects_flat_images(workflow):
    workdir, _, expected = workflow
    rejected = _results(workdir, "crop_filter/rejected.parquet")
    assert sorted(rejected["source"]) == sorted(expected["flat"])
    assert all(r.startswith(FLAT) for r in rejected["reason"])
    assert sorted(_results(workdir, "crop_filter/manifest.parquet")["source"]) == sorted(expected["good"])


@pytest.mark.slow
def test_workflow_path_with_spaces_and_quotes(workflow, scanner):
    """Case 16: the folder path is handed to Python as data, never through a shell."""
    workdir, _, _ = workflow
    root, _ = scanner
    assert " " in str(root) and "'" in str(root) and '"' in str(root)
    inventory = _results(workdir, "ingest/inventory.parquet")
    assert len(inventory) == 20
    assert not list(workdir.glob("results/raw/*"))  # a folder source is used in place


@pytest.mark.slow
def test_workflow_split_left_empty_by_the_filters_stops_with_counts(workflow):
    """Case 11 through Snakemake: the split rule fails with the split and the counts on stderr,
    and leaves no split manifest."""
    workdir, path, _ = workflow
    result = snakemake(workdir, "results/split/manifest.parquet", "--configfile", str(path), check=False)
    assert result.returncode != 0
    assert re.search(r"split '(train|val|test)' is empty: fractions .* over 2 groups and 10 images gave "
                     r"train=\d+, val=\d+, test=\d+; add data, or change split.fractions", result.stderr)
    assert not (workdir / "results/split/manifest.parquet").exists()
