"""Generated bright-field metaphase photographs (karyosr.dataset.photos) and the `photos` source."""

import copy
import runpy
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from karyosr.config import validate
from karyosr.dataset import photos

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"n_slides": 2, "photos_per_slide": 3, "size": [192, 256]}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("photos") / "raw"
    table = photos.generate_photos(out, SMALL, seed=11)
    return out, table


def _read(out: Path, rel: str) -> np.ndarray:
    img = cv2.imread(str(out / rel), cv2.IMREAD_UNCHANGED)
    assert img is not None, rel
    return img


def test_layout_and_table(written):
    out, table = written
    assert list(table.columns) == ["file", "slide", "height", "width", "jpeg_quality", "has_spread", "trailing_bytes"]
    assert list(table.file) == [f"s{s:03d}/s{s:03d}_{k:03d}.jpg" for s in range(2) for k in range(3)]
    assert list(table.slide) == ["s000"] * 3 + ["s001"] * 3
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == list(table.file)
    assert not list(out.parent.glob("raw.tmp-*"))
    for row in table.itertuples():
        img = _read(out, row.file)
        assert img.shape == (192, 256, 3) and img.dtype == np.uint8
        assert (row.height, row.width) == (192, 256)
        assert 80 <= row.jpeg_quality <= 95
        assert row.trailing_bytes == 0  # warning_fraction defaults to 0
    # spreads_fraction 0.75 of 3 photos per slide: 2 with a spread
    assert list(table.groupby("slide").has_spread.sum()) == [2, 2]


def test_deterministic_from_seed(written, tmp_path):
    out, table = written
    again = photos.generate_photos(tmp_path / "again", SMALL, seed=11)
    assert again.equals(table)
    for rel in table.file:
        assert (out / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes()
    other = photos.generate_photos(tmp_path / "other", {**SMALL, "n_slides": 1}, seed=12)
    assert (out / other.file[0]).read_bytes() != (tmp_path / "other" / other.file[0]).read_bytes()


def _quality_tables() -> dict[bytes, int]:
    """The luminance quantisation table cv2 writes at each JPEG quality."""
    return {_luma_table(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, q])[1]
                        .tobytes()): q for q in range(1, 101)}


def _luma_table(data: bytes) -> bytes:
    pos = data.index(b"\xff\xdb")  # first DQT segment: table 0 (luminance), 8-bit precision
    assert data[pos + 4] == 0
    return data[pos + 5:pos + 69]


def test_jpeg_quality_is_the_recorded_one(written):
    out, table = written
    tables = _quality_tables()
    for row in table.itertuples():
        assert tables[_luma_table((out / row.file).read_bytes())] == row.jpeg_quality
    assert table.jpeg_quality.nunique() > 1  # drawn per photo


def test_colour_grey_uneven_background(written):
    out, table = written
    for row in table.itertuples():
        img = _read(out, row.file).astype(np.float32)
        b, g, r = (img[:, :, c] for c in range(3))
        # three channels, not one grey plane copied: the lamp's colour cast sets them apart
        assert np.abs(b - r).mean() > 2.0 and not np.array_equal(b, g)
        grey = img.mean(axis=2)
        bg = float(np.median(grey))
        assert 60 < bg < 235, bg  # grey, neither white nor black
        assert np.percentile(img, 99.9) < 255  # the background is not saturated
        # uneven illumination: the corners (median of a patch, objects aside) differ
        corners = [np.median(grey[y:y + 24, x:x + 24]) for y in (0, 168) for x in (0, 232)]
        assert max(corners) - min(corners) > 3.0, corners


def _dark_blobs(img: np.ndarray) -> tuple[float, int]:
    """Share of pixels darker than 0.8 x the local background, and dark blobs of >= 10 pixels."""
    grey = img.astype(np.float32).mean(axis=2)
    # the background without the objects (a closing wider than a nucleus), flat-fielding the vignetting
    bg = cv2.morphologyEx(grey, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (61, 61)))
    dark = grey < 0.8 * cv2.GaussianBlur(bg, (0, 0), 8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(dark.astype(np.uint8), connectivity=8)
    return float(dark.mean()), int((stats[1:, cv2.CC_STAT_AREA] >= 10).sum())


def test_dark_chromosomes_in_photos_with_a_spread(tmp_path):
    params = {**SMALL, "n_slides": 1, "photos_per_slide": 2, "size": [256, 320]}
    with_spread = photos.generate_photos(tmp_path / "a", {**params, "spreads_fraction": 1.0}, seed=3)
    without = photos.generate_photos(tmp_path / "b", {**params, "spreads_fraction": 0.0}, seed=3)
    assert with_spread.has_spread.all() and not without.has_spread.any()
    for rel in with_spread.file:
        fraction, blobs = _dark_blobs(_read(tmp_path / "a", rel))
        assert 0.01 < fraction < 0.3 and blobs >= 18, (rel, fraction, blobs)  # many dark chromosomes
    for rel in without.file:
        _, blobs = _dark_blobs(_read(tmp_path / "b", rel))
        assert blobs <= 12, (rel, blobs)  # a few nuclei and debris only


def test_warning_fraction_adds_bytes_libjpeg_warns_about(tmp_path, capfd):
    table = photos.generate_photos(tmp_path / "w", {**SMALL, "n_slides": 1, "warning_fraction": 1.0}, seed=5)
    assert table.trailing_bytes.between(16, 32).all()
    capfd.readouterr()
    for row in table.itertuples():
        data = (tmp_path / "w" / row.file).read_bytes()
        assert data.endswith(b"\xff\xd9")
        clean = data[:-2 - row.trailing_bytes] + b"\xff\xd9"
        img = _read(tmp_path / "w", row.file)
        assert img.shape == (192, 256, 3)
        assert np.array_equal(img, cv2.imdecode(np.frombuffer(clean, np.uint8), cv2.IMREAD_UNCHANGED))
    assert "extraneous bytes before marker 0xd9" in capfd.readouterr().err
    half = photos.generate_photos(tmp_path / "h", {**SMALL, "n_slides": 1, "photos_per_slide": 4,
                                                   "warning_fraction": 0.5}, seed=5)
    assert (half.trailing_bytes > 0).sum() == 2


@pytest.mark.parametrize("params, words", [
    ({"bogus": 1}, "bogus"),
    ({"band_style": "q"}, "band_style"),
    ({"size": [32, 64]}, "size"),
    ({"size": [100, 200, 3]}, "size"),
    ({"jpeg_quality": [95, 80]}, "jpeg_quality"),
    ({"jpeg_quality": [80, 101]}, "jpeg_quality"),
    ({"warning_fraction": 2}, "warning_fraction"),
    ({"photos_per_slide": 2.5}, "photos_per_slide"),
    ({"chr1_length_px": [4, 6]}, "chr1_length_px"),
    ({"blur": "x"}, "blur"),
])
def test_bad_params_name_the_key(params, words):
    with pytest.raises(ValueError, match=words):
        photos.resolve_params(params)


def test_params_scale_with_the_photo():
    small, big = photos.resolve_params({}), photos.resolve_params({"size": [1840, 3264]})
    assert small["size"] == (768, 1024) and small["chr1_length_px"] == (60.0, 80.0)
    assert big["size"] == (1840, 3264) and big["chr1_length_px"] == pytest.approx((143.75, 191.67), abs=0.01)
    assert photos.resolve_params({"chr1_length_px": 70})["chr1_length_px"] == (70.0, 70.0)


def test_photos_source_in_config_and_fetch_script(tmp_path):
    config = validate({"dataset": {"source": {"type": "photos"}}, "photos": {"photos_per_slide": 1}})
    assert config["dataset"]["source"]["type"] == "photos"
    params = photos.resolve_params(config["photos"])  # the generator accepts its slice
    assert params["photos_per_slide"] == 1 and validate({})["photos"] == {}
    # workflow/scripts/fetch.py renders the photos for this source type
    fake = SimpleNamespace(log=[str(tmp_path / "fetch.log")], output=[str(tmp_path / "raw")],
                           params=SimpleNamespace(source=copy.deepcopy(config["dataset"]["source"]),
                                                  synthetic={"n_slides": 1, "photos_per_slide": 1, "size": [96, 128]},
                                                  seed=1))
    runpy.run_path(str(ROOT / "workflow" / "scripts" / "fetch.py"), init_globals={"snakemake": fake})
    img = _read(tmp_path / "raw", "s000/s000_000.jpg")
    assert img.shape == (96, 128, 3)
    assert '"photos": config["photos"]' in (ROOT / "workflow" / "rules" / "fetch.smk").read_text()
