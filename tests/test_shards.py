"""Tests for karyosr.io.shards (Parquet image shards and manifests) and karyosr.io.atomic."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from karyosr.io import atomic, shards


# --------------------------------------------------------------------------- shard_of


# Computed once with blake2b(digest_size=8), big-endian, modulo n. These must never change:
# a different hash would move images between shards and invalidate every cached stage output.
FIXED = {
    "synthetic/c0001/c0001 1a": {4: 3, 8: 3, 16: 3, 1000: 411},
    "gband/7/1_1_56131_115966_7": {4: 2, 8: 2, 16: 2, 1000: 138},
    "a": {4: 3, 8: 7, 16: 15, 1000: 343},
    "": {4: 0, 8: 4, 16: 4, 1000: 876},
    "\u00fc/\u00f1": {4: 0, 8: 0, 16: 8, 1000: 440},
}


@pytest.mark.parametrize("image_id", sorted(FIXED))
def test_shard_of_fixed_values(image_id):
    for n, expected in FIXED[image_id].items():
        assert shards.shard_of(image_id, n) == expected, (image_id, n)
    assert shards.shard_of(image_id, 1) == 0


def test_shard_of_in_range_and_repeatable():
    ids = [f"ds/g{i % 17}/img_{i}" for i in range(500)]
    for n in (1, 3, 7, 64):
        first = [shards.shard_of(i, n) for i in ids]
        assert first == [shards.shard_of(i, n) for i in ids]
        assert all(0 <= s < n for s in first)


def test_shard_of_spreads_evenly():
    n, count = 8, 8000
    ids = [f"synthetic/c{i // 46:04d}/c{i // 46:04d} {i % 23 + 1}{'ab'[i % 2]}_{i}" for i in range(count)]
    per_shard = Counter(shards.shard_of(i, n) for i in ids)
    assert set(per_shard) == set(range(n))
    expected = count / n
    # binomial sd ~ 30; 15% is > 4 sd
    for shard, k in per_shard.items():
        assert abs(k - expected) < 0.15 * expected, per_shard


def test_shard_names():
    assert shards.shard_names(3) == ["000", "001", "002"]
    assert shards.shard_names(12)[-1] == "011"


# --------------------------------------------------------------------------- write/read shards


def _images():
    rng = np.random.default_rng(3)
    return {
        "ds/g2/c": rng.integers(0, 256, (5, 7), dtype=np.uint8),
        "ds/g1/a": rng.integers(0, 65536, (9, 4), dtype=np.uint16),
        "ds/g1/b": rng.integers(0, 256, (1, 13), dtype=np.uint8),
        "ds/g3/d": rng.integers(0, 65536, (16, 16), dtype=np.uint16),
    }


def _write(path, images: dict, **extra):
    ids = list(images)
    labels = [sum(map(ord, i)) % 24 for i in ids]  # a per-image value, whatever the row order
    meta = pd.DataFrame({"image_id": ids, "label": pd.array(labels, dtype="Int8"), **extra})
    shards.write_shard(path, meta, [images[i] for i in ids])
    return meta


def test_round_trip_uint8_uint16_sorted(tmp_path):
    images = _images()
    meta = _write(tmp_path / "s.parquet", images, group=["g2", "g1", "g1", "g3"])
    got_meta, got = shards.read_shard(tmp_path / "s.parquet")
    assert list(got_meta["image_id"]) == sorted(images)
    assert "pixels" not in got_meta.columns
    for row, image in zip(got_meta.itertuples(index=False), got):
        original = images[row.image_id]
        assert image.dtype == original.dtype
        assert image.shape == original.shape == (row.height, row.width)
        assert row.dtype == original.dtype.name
        np.testing.assert_array_equal(image, original)
        # per-image columns travel with their image
        expected = meta.set_index("image_id").loc[row.image_id]
        assert row.label == expected["label"] and row.group == expected["group"]


def test_write_shard_accepts_non_contiguous_views(tmp_path):
    base = np.arange(60, dtype=np.uint8).reshape(6, 10)
    view = base[:, ::2]  # not C-contiguous
    shards.write_shard(tmp_path / "s.parquet", pd.DataFrame({"image_id": ["x"]}), [view])
    _, (got,) = shards.read_shard(tmp_path / "s.parquet")
    np.testing.assert_array_equal(got, view)


def test_write_shard_replaces_stale_pixel_columns(tmp_path):
    image = np.full((3, 3), 9, np.uint8)
    meta = pd.DataFrame({"image_id": ["x"], "height": [99], "width": [99], "dtype": ["uint16"], "pixels": [b"old"]})
    shards.write_shard(tmp_path / "s.parquet", meta, [image])
    got_meta, (got,) = shards.read_shard(tmp_path / "s.parquet")
    assert (got_meta.loc[0, "height"], got_meta.loc[0, "width"], got_meta.loc[0, "dtype"]) == (3, 3, "uint8")
    np.testing.assert_array_equal(got, image)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4, 3), np.uint8),
        np.zeros((4, 4, 1), np.uint8),
        np.zeros(16, np.uint8),
        np.zeros((4, 4), np.float32),
        np.zeros((4, 4), np.float64),
        np.zeros((4, 4), np.int16),
        np.zeros((4, 4), bool),
    ],
    ids=["rgb", "hw1", "1d", "float32", "float64", "int16", "bool"],
)
def test_write_shard_rejects_non_grayscale_integer(tmp_path, bad):
    meta = pd.DataFrame({"image_id": ["ok", "bad"]})
    with pytest.raises(ValueError, match="bad"):
        shards.write_shard(tmp_path / "s.parquet", meta, [np.zeros((2, 2), np.uint8), bad])
    assert not (tmp_path / "s.parquet").exists()


def test_write_shard_length_mismatch(tmp_path):
    with pytest.raises(ValueError, match="2 manifest rows but 1 images"):
        shards.write_shard(tmp_path / "s.parquet", pd.DataFrame({"image_id": ["a", "b"]}), [np.zeros((2, 2), np.uint8)])


def test_empty_shard_round_trip(tmp_path):
    meta = pd.DataFrame({"image_id": pd.Series([], dtype=object), "label": pd.array([], dtype="Int8")})
    shards.write_shard(tmp_path / "e.parquet", meta, [])
    got_meta, got = shards.read_shard(tmp_path / "e.parquet")
    assert got == [] and len(got_meta) == 0
    assert {"image_id", "label", "height", "width", "dtype"} <= set(got_meta.columns)


def test_read_shard_meta_has_no_pixels_and_does_not_read_them(tmp_path, monkeypatch):
    _write(tmp_path / "s.parquet", _images())
    calls = []
    real = pq.read_table

    def spy(source, *args, columns=None, **kwargs):
        calls.append(columns)
        return real(source, *args, columns=columns, **kwargs)

    monkeypatch.setattr(pq, "read_table", spy)
    meta = shards.read_shard_meta(tmp_path / "s.parquet")
    assert "pixels" not in meta.columns
    assert list(meta["image_id"]) == sorted(_images())
    assert {"image_id", "label", "height", "width", "dtype"} <= set(meta.columns)
    for columns in calls:  # however it reads, it must name the columns and leave pixels out
        assert columns is not None and "pixels" not in columns


def test_stack():
    a, b = np.zeros((3, 4), np.uint8), np.ones((3, 4), np.uint8)
    stacked = shards.stack([a, b])
    assert stacked.shape == (2, 3, 4)
    np.testing.assert_array_equal(stacked[1], b)
    with pytest.raises(ValueError, match="different sizes"):
        shards.stack([a, np.zeros((4, 3), np.uint8)])
    assert shards.stack([]).shape[0] == 0


# --------------------------------------------------------------------------- manifests


def test_build_manifest_points_back_to_images(tmp_path):
    rng = np.random.default_rng(0)
    n_shards = 3
    images = {f"ds/g{i % 5}/im{i:02d}": rng.integers(0, 256, (4 + i % 3, 6), dtype=np.uint8) for i in range(20)}
    stage = tmp_path / "results" / "crop_filter"
    paths = []
    for shard, name in enumerate(shards.shard_names(n_shards)):
        mine = {k: v for k, v in images.items() if shards.shard_of(k, n_shards) == shard}
        path = stage / "shards" / f"{name}.parquet"
        _write(path, mine)
        paths.append(path)
    manifest_path = stage / "manifest.parquet"
    manifest = shards.build_manifest(paths, manifest_path)

    assert len(manifest) == len(images)
    assert list(manifest["image_id"]) == sorted(images)
    assert "pixels" not in manifest.columns
    assert set(manifest["shard"]) <= {f"shards/{n}.parquet" for n in shards.shard_names(n_shards)}
    cache = {}
    for row in manifest.itertuples(index=False):
        assert not os.path.isabs(row.shard) and "\\" not in row.shard
        path = manifest_path.parent / row.shard
        if path not in cache:
            cache[path] = shards.read_shard(path)
        meta, imgs = cache[path]
        assert meta["image_id"].iloc[row.row] == row.image_id
        np.testing.assert_array_equal(imgs[row.row], images[row.image_id])


def test_build_manifest_relative_to_manifest_folder(tmp_path):
    _write(tmp_path / "a" / "shards" / "000.parquet", {"x": np.zeros((2, 2), np.uint8)})
    manifest = shards.build_manifest([tmp_path / "a" / "shards" / "000.parquet"], tmp_path / "b" / "m.parquet")
    assert manifest.loc[0, "shard"] == "../a/shards/000.parquet"
    assert manifest.loc[0, "row"] == 0


def test_same_data_gives_identical_bytes(tmp_path):
    images = _images()
    _write(tmp_path / "one.parquet", images)
    _write(tmp_path / "again.parquet", images)
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "again.parquet").read_bytes()
    # same rows given in a different order: the shard sorts them
    _write(tmp_path / "two.parquet", dict(reversed(list(images.items()))))
    one, two = (tmp_path / "one.parquet").read_bytes(), (tmp_path / "two.parquet").read_bytes()
    assert hashlib.sha256(one).digest() == hashlib.sha256(two).digest()

    table = pd.DataFrame({"image_id": ["b", "a"], "psnr": [30.5, 31.25]})
    shards.write_table(tmp_path / "t1.parquet", table)
    shards.write_table(tmp_path / "t2.parquet", table.copy())
    assert (tmp_path / "t1.parquet").read_bytes() == (tmp_path / "t2.parquet").read_bytes()


def test_write_table_round_trip_and_no_temp_files(tmp_path):
    table = pd.DataFrame({"image_id": ["b", "a"], "label": pd.array([3, None], dtype="Int8"), "x": [1.5, 2.5]},
                         index=[10, 20])
    out = tmp_path / "sub" / "t.parquet"
    shards.write_table(out, table)
    shards.write_table(out, table)  # overwrite
    assert sorted(p.name for p in out.parent.iterdir()) == ["t.parquet"]
    got = shards.read_table(out)
    assert list(got.index) == [0, 1]  # index dropped, not stored as a column
    assert list(got.columns) == ["image_id", "label", "x"]
    assert got["label"].isna().tolist() == [False, True]
    assert list(shards.read_table(out, columns=["x"]).columns) == ["x"]


def test_concat_tables(tmp_path):
    shards.write_table(tmp_path / "1.parquet", pd.DataFrame({"image_id": ["a"], "reason": ["r1"]}))
    shards.write_table(tmp_path / "2.parquet", pd.DataFrame(columns=["image_id", "reason"]))
    shards.write_table(tmp_path / "3.parquet", pd.DataFrame({"image_id": ["b", "c"], "reason": ["r2", "r3"]}))
    got = shards.concat_tables([tmp_path / f"{i}.parquet" for i in (1, 2, 3)])
    assert list(got["image_id"]) == ["a", "b", "c"]
    assert shards.concat_tables([]).empty


# --------------------------------------------------------------------------- atomic


def test_atomic_path_keeps_old_file_when_block_raises(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp != target
            tmp.write_text("new, partial")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_no_file_when_block_raises_before_existing(tmp_path):
    target = tmp_path / "deep" / "out.bin"
    with pytest.raises(KeyError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"x")
            raise KeyError("boom")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_write_helpers(tmp_path):
    atomic.write_text(tmp_path / "a" / "t.txt", "h\u00e9llo")
    assert (tmp_path / "a" / "t.txt").read_bytes() == "h\u00e9llo".encode("utf-8")
    atomic.write_bytes(tmp_path / "a" / "t.txt", b"\x00\x01")
    assert (tmp_path / "a" / "t.txt").read_bytes() == b"\x00\x01"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["t.txt"]


def test_write_table_failure_keeps_old_file(tmp_path, monkeypatch):
    out = tmp_path / "t.parquet"
    shards.write_table(out, pd.DataFrame({"a": [1]}))
    before = out.read_bytes()

    def broken(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError):
        shards.write_table(out, pd.DataFrame({"a": [2]}))
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]
