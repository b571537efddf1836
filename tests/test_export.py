"""Tests for karyosr.io.export: image files for Fiji/ImageJ from the Parquet shards."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from karyosr.io import export, shards


def _shard(path, ids, dtype=np.uint8, size=(6, 5), seed=0, **columns):
    rng = np.random.default_rng(seed)
    peak = np.iinfo(dtype).max
    images = [rng.integers(0, peak, size=size, endpoint=True).astype(dtype) for _ in ids]
    meta = pd.DataFrame({"image_id": ids, **columns})
    shards.write_shard(path, meta, images)
    return dict(zip(ids, images))


def _read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_file_stem_flattens_the_id_and_refuses_paths_that_escape():
    assert export.file_stem("tiny/c0001/c0001 1a") == "tiny__c0001__c0001 1a"
    for bad in ("a/../b", "/abs", "a//b", "a/./b", "a\\b", ""):
        with pytest.raises(ValueError, match="cannot be a file name"):
            export.file_stem(bad)


@pytest.mark.parametrize("dtype, extension", [(np.uint8, ".png"), (np.uint16, ".tif")])
def test_encode_is_lossless_png_for_8_bit_and_tiff_for_16_bit(tmp_path, dtype, extension):
    image = np.arange(35, dtype=np.int64).reshape(5, 7) * (np.iinfo(dtype).max // 34)
    image = image.astype(dtype)
    found, data = export.encode(image)
    assert found == extension
    path = tmp_path / f"x{extension}"
    path.write_bytes(data)
    back = _read(path)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, image)


def test_encode_refuses_other_pixel_types_naming_the_image():
    with pytest.raises(ValueError, match="'d/g/f'.*float32"):
        export.encode(np.zeros((4, 4), np.float32), "d/g/f")
    with pytest.raises(ValueError, match="shape"):
        export.encode(np.zeros((4, 4, 3), np.uint8), "rgb")


def test_export_writes_kept_images_with_an_index(tmp_path):
    a = _shard(tmp_path / "000.parquet", ["d/c1/img 1", "d/c1/img 2"], class_name=["1", "X"], label=[0, 22])
    b = _shard(tmp_path / "001.parquet", ["d/c2/img 3"], seed=1, class_name=["Y"], label=[23])
    out = tmp_path / "export/x4/bicubic"
    index = export.export_images([tmp_path / "000.parquet", tmp_path / "001.parquet"],
                                 {"d/c1/img 2", "d/c2/img 3"}, out)
    assert sorted(p.name for p in out.iterdir()) == ["d__c1__img 2.png", "d__c2__img 3.png", "images.csv"]
    np.testing.assert_array_equal(_read(out / "d__c1__img 2.png"), a["d/c1/img 2"])
    np.testing.assert_array_equal(_read(out / "d__c2__img 3.png"), b["d/c2/img 3"])
    table = pd.read_csv(out / "images.csv", dtype={"class_name": str})
    assert list(table.columns) == export.INDEX_COLUMNS
    assert list(table["image_id"]) == ["d/c1/img 2", "d/c2/img 3"]
    assert list(table["class_name"]) == ["X", "Y"] and list(table["dtype"]) == ["uint8", "uint8"]
    assert list(index["file"]) == list(table["file"])
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_export_16_bit_as_tiff_with_classes_from_the_split(tmp_path):
    images = _shard(tmp_path / "hr.parquet", ["d/c/a", "d/c/b"], dtype=np.uint16, size=(8, 8))
    split = pd.DataFrame({"image_id": ["d/c/a", "d/c/b"], "class_name": ["7", "22"], "label": [6, 21],
                          "split": ["test", "train"]})
    out = tmp_path / "HR"
    index = export.export_images([tmp_path / "hr.parquet"], export.ids_in_split(split), out, labels=split)
    assert sorted(p.name for p in out.iterdir()) == ["d__c__a.tif", "images.csv"]
    back = _read(out / "d__c__a.tif")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, images["d/c/a"])
    assert index.loc[0, "class_name"] == "7" and index.loc[0, "label"] == 6 and index.loc[0, "dtype"] == "uint16"


def test_export_stops_on_a_missing_image_or_a_file_name_clash(tmp_path):
    _shard(tmp_path / "s.parquet", ["d/a", "d__a"])
    with pytest.raises(ValueError, match="in none of the shards.*'d/zzz'"):
        export.export_images([tmp_path / "s.parquet"], {"d/a", "d/zzz"}, tmp_path / "out1")
    with pytest.raises(ValueError, match="'d/a' and 'd__a' both export as 'd__a.png'|'d__a' and 'd/a' both"):
        export.export_images([tmp_path / "s.parquet"], {"d/a", "d__a"}, tmp_path / "out2")


PROFILES = ["x4", "x2"]


def _methods_for(profile):
    return ["nearest", "bicubic"] + (["srresnet"] if profile == "x4" else [])


def test_select_pairs_is_off_by_default_and_all_when_lists_are_empty():
    assert export.select_pairs({}, PROFILES, _methods_for) == []
    assert export.select_pairs({"images": False, "profiles": ["x4"]}, PROFILES, _methods_for) == []
    pairs = export.select_pairs({"images": True, "profiles": [], "methods": []}, PROFILES, _methods_for)
    assert pairs == [("x4", "LR"), ("x4", "nearest"), ("x4", "bicubic"), ("x4", "srresnet"), ("x4", "HR"),
                     ("x2", "LR"), ("x2", "nearest"), ("x2", "bicubic"), ("x2", "HR")]


def test_select_pairs_follows_the_selection_and_where_methods_run():
    pairs = export.select_pairs({"images": True, "methods": ["srresnet", "bicubic"]}, PROFILES, _methods_for)
    assert pairs == [("x4", "LR"), ("x4", "srresnet"), ("x4", "bicubic"), ("x4", "HR"),
                     ("x2", "LR"), ("x2", "bicubic"), ("x2", "HR")]
    pairs = export.select_pairs({"images": True, "profiles": ["x2"], "methods": ["nearest"]}, PROFILES, _methods_for)
    assert pairs == [("x2", "LR"), ("x2", "nearest"), ("x2", "HR")]


def test_select_pairs_names_the_key_and_value_it_cannot_find():
    with pytest.raises(ValueError, match=r"export.profiles: \['x8'\]"):
        export.select_pairs({"images": True, "profiles": ["x8"]}, PROFILES, _methods_for)
    # srresnet exists, but not on the one profile exported
    with pytest.raises(ValueError, match=r"export.methods: \['srresnet'\].*\['x2'\]"):
        export.select_pairs({"images": True, "profiles": ["x2"], "methods": ["srresnet"]}, PROFILES, _methods_for)
    with pytest.raises(ValueError, match="'HR' clashes"):
        export.select_pairs({"images": True}, ["x4"], lambda p: ["bicubic", "HR"])


def test_16_bit_exports_carry_the_pixel_size_fiji_reads(tmp_path):
    """HR crops record the ingested file's pixel size; crop_filter shrank the second crop to half
    (crop_scale 0.5), so its pixels are twice as large. LR images get theirs from the HR table."""
    tifffile = pytest.importorskip("tifffile")
    ids = ["d/c/a", "d/c/b", "d/c/unknown"]
    _shard(tmp_path / "hr.parquet", ids, dtype=np.uint16, size=(8, 8), pixel_size_um=[0.1, 0.1, np.nan],
           crop_scale=[1.0, 0.5, 1.0])
    index = export.export_images([tmp_path / "hr.parquet"], set(ids), tmp_path / "HR")
    assert list(index["pixel_size_um"].round(6)[:2]) == [0.1, 0.2] and np.isnan(index["pixel_size_um"][2])
    for name, per_micron in (("d__c__a.tif", 10), ("d__c__b.tif", 5)):
        with tifffile.TiffFile(tmp_path / "HR" / name) as tif:
            assert tif.imagej_metadata["unit"] == "micron" and tif.pages.first.dtype == np.uint16
            assert tif.pages.first.tags["XResolution"].value == (per_micron, 1)
    with tifffile.TiffFile(tmp_path / "HR/d__c__unknown.tif") as tif:
        assert not tif.is_imagej and int(tif.pages.first.tags["ResolutionUnit"].value) == 1  # no length
    hr_meta = pd.DataFrame({"image_id": ids, "pixel_size_um": [0.1, 0.1, np.nan], "crop_scale": [1.0, 0.5, 1.0]})
    assert export.pixel_sizes(hr_meta, 4) == pytest.approx({"d/c/a": 0.4, "d/c/b": 0.8})
    _shard(tmp_path / "lr.parquet", ids[:1], dtype=np.uint16, size=(2, 2))
    export.export_images([tmp_path / "lr.parquet"], set(ids[:1]), tmp_path / "LR", sizes=export.pixel_sizes(hr_meta, 4))
    with tifffile.TiffFile(tmp_path / "LR/d__c__a.tif") as tif:
        assert tif.pages.first.tags["XResolution"].value == (5, 2)  # 2.5 pixels per micron
