"""Tests for karyosr.report.viewer: the self-contained comparison page, built from tiny arrays."""

from __future__ import annotations

import base64
import html
import json
import re

import cv2
import numpy as np
import pandas as pd
import pytest

from karyosr.io import shards
from karyosr.report import viewer

IDS = ["d/c1/a 1", "d/c1/b X", "d/c2/c Y"]
CLASSES = ["1", "X", "Y"]


def _images(seed, size, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    return {i: rng.integers(0, np.iinfo(dtype).max, size=size, endpoint=True).astype(dtype) for i in IDS}


@pytest.fixture
def inputs():
    hr = _images(0, (16, 16))
    profiles = [{"name": "x4", "scale": 4, "methods": ["bicubic", "srresnet"]},
                {"name": "x2", "scale": 2, "methods": ["bicubic"]}]
    lr = {"x4": _images(1, (4, 4)), "x2": _images(2, (8, 8))}
    sr = {"x4": {"bicubic": _images(3, (16, 16)), "srresnet": _images(4, (16, 16))}, "x2": {"bicubic": _images(5, (16, 16))}}
    rows = [{"profile": p["name"], "method": m, "image_id": i, "psnr": 20.0 + k, "ssim": 0.5, "niqe": np.nan,
             "piqe": 30.0 + k} for p in profiles for k, m in enumerate(p["methods"]) for i in IDS]
    hr_quality = pd.DataFrame({"image_id": IDS, "profile": "", "method": "HR", "niqe": [4.0, 5.0, 6.0],
                               "piqe": [10.0, 11.0, 12.0]})
    return dict(images=pd.DataFrame({"image_id": IDS, "class_name": CLASSES}), profiles=profiles, lr=lr, sr=sr,
                hr=hr, per_image=pd.DataFrame(rows), hr_quality=hr_quality)


def page_data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def sprite_of(page: str, element: str) -> np.ndarray:
    match = re.search(rf'<script type="application/octet-stream" id="{element}">([A-Za-z0-9+/=]+)</script>', page)
    return cv2.imdecode(np.frombuffer(base64.b64decode(match.group(1)), np.uint8), cv2.IMREAD_UNCHANGED)


def test_display_mapping_keeps_8_bit_and_stretches_16_bit_over_the_hr_range():
    image = np.arange(256, dtype=np.uint8).reshape(16, 16)
    window = viewer.display_window(image)
    assert window == (0, 255) and viewer.to_display(image, window) is image
    hr = np.array([[1000, 2000], [3000, 5000]], np.uint16)
    window = viewer.display_window(hr)
    assert window == (1000, 5000)
    shown = viewer.to_display(np.array([[0, 1000, 3000, 5000, 60000]], np.uint16), window)
    assert shown.dtype == np.uint8 and shown.tolist() == [[0, 0, 128, 255, 255]]
    assert viewer.display_window(np.full((2, 2), 7, np.uint16)) == (7, 8)  # flat image: no division by zero


def test_sprite_places_panels_left_to_right_and_decodes_to_the_same_pixels():
    small, large = _images(0, (4, 4))[IDS[0]], _images(1, (16, 16))[IDS[0]]
    png, layout = viewer.sprite([small, large, large], (0, 255))
    assert layout == [[0, 4, 4], [4, 16, 16], [20, 16, 16]]
    back = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert back.shape == (16, 36)
    np.testing.assert_array_equal(back[:4, :4], small)
    np.testing.assert_array_equal(back[:, 20:], large)
    with pytest.raises(ValueError):
        viewer.sprite([], (0, 255))


def test_page_holds_every_profile_image_and_method(inputs):
    page, budget = viewer.build_page("karyosr viewer", **inputs)
    data = page_data(page)
    assert [p["panels"] for p in data["profiles"]] == [["LR", "bicubic", "srresnet", "HR"], ["LR", "bicubic", "HR"]]
    assert [(i["id"], i["cls"]) for i in data["images"]] == list(zip(IDS, CLASSES))
    assert budget["sprites"] == 6 and budget["images"] == 3 and budget["page_bytes"] == len(page.encode())
    assert data["budget"]["sprite_bytes"] == budget["sprite_bytes"] > 0
    # the second image of x4: LR at its own size, then each method and HR, pixel for pixel
    entry = data["sprites"]["x4"][1]
    picture = sprite_of(page, entry["el"])
    assert entry["layout"] == [[0, 4, 4], [4, 16, 16], [20, 16, 16], [36, 16, 16]]
    expected = [inputs["lr"]["x4"][IDS[1]], inputs["sr"]["x4"]["bicubic"][IDS[1]],
                inputs["sr"]["x4"]["srresnet"][IDS[1]], inputs["hr"][IDS[1]]]
    for (x, w, h), image in zip(entry["layout"], expected):
        np.testing.assert_array_equal(picture[:h, x : x + w], image)
    # scores per method in panel order (LR has none), NaN as null, HR with NIQE/PIQE only
    assert data["scores"]["x4"][0] == [[20.0, 0.5, None, 30.0], [21.0, 0.5, None, 31.0], [None, None, 4.0, 10.0]]
    assert data["scores"]["x2"][2] == [[20.0, 0.5, None, 30.0], [None, None, 6.0, 12.0]]


def test_page_is_self_contained_and_escapes_what_it_embeds(inputs):
    inputs["images"]["class_name"] = ["1", "</script><script>alert(1)</script>", "Y"]
    page, _ = viewer.build_page("a <b> & </script>", **inputs)
    assert "<title>a &lt;b&gt; &amp; &lt;/script&gt;</title>" in page
    assert page_data(page)["images"][1]["cls"] == "</script><script>alert(1)</script>"  # JSON intact
    assert "alert(1)</script>" not in page
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page)  # nothing to fetch
    assert "{{" not in page


def test_missing_image_names_profile_method_and_id(inputs):
    del inputs["sr"]["x4"]["srresnet"][IDS[2]]
    with pytest.raises(ValueError, match=r"profile x4, method srresnet has no image 'd/c2/c Y'"):
        viewer.build_page("t", **inputs)


def test_choose_images_caps_the_test_split_with_a_fixed_class_spread():
    split = pd.DataFrame({"image_id": [f"d/g{i}/i{i}" for i in range(30)], "class_name": [str(i % 5) for i in range(30)],
                          "label": [i % 5 for i in range(30)], "split": ["test"] * 20 + ["train"] * 10})
    everything = viewer.choose_images(split, 400)
    assert list(everything["image_id"]) == [f"d/g{i}/i{i}" for i in range(20)]  # natural order: g2 before g10
    capped = viewer.choose_images(split, 5)
    assert len(capped) == 5 and set(capped["class_name"]) == {"0", "1", "2", "3", "4"}
    assert capped.equals(viewer.choose_images(split, 5))


def test_run_reads_shards_by_input_key_and_writes_the_page(inputs, tmp_path):
    split = inputs["images"].assign(label=[0, 22, 23], split="test")
    files = {"split": tmp_path / "split.parquet", "per_image": tmp_path / "per_image.parquet",
             "hr_quality": tmp_path / "hr_quality.parquet", "hr": [tmp_path / "hr.parquet"]}
    shards.write_table(files["split"], split)
    shards.write_table(files["per_image"], inputs["per_image"])
    shards.write_table(files["hr_quality"], inputs["hr_quality"])

    def write(path, images):
        shards.write_shard(path, pd.DataFrame({"image_id": list(images)}), list(images.values()))
        return [path]

    write(tmp_path / "hr.parquet", inputs["hr"])
    for profile in inputs["profiles"]:
        name = profile["name"]
        files[viewer.input_key("lr", name)] = write(tmp_path / f"lr_{name}.parquet", inputs["lr"][name])
        for method in profile["methods"]:
            files[viewer.input_key("sr", name, method)] = write(tmp_path / f"{method}_{name}.parquet",
                                                                inputs["sr"][name][method])
    out = tmp_path / "report/viewer.html"
    budget = viewer.run(files, inputs["profiles"], "run test", 400, out)
    page = out.read_text()
    assert budget["page_bytes"] == len(page.encode()) and html.escape("run test") in page
    entry = page_data(page)["sprites"]["x2"][0]
    np.testing.assert_array_equal(sprite_of(page, entry["el"])[:, -16:], inputs["hr"][IDS[0]])
