import hashlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from karyosr.dataset import synthetic

SMALL = {"n_cells": 2, "male_fraction": 0.5, "chr1_length_px": 60, "width_px": 7}


def _read(root: Path, rel: str) -> np.ndarray:
    img = cv2.imread(str(root / rel), cv2.IMREAD_UNCHANGED)
    assert img is not None, rel
    return img


def _border(img: np.ndarray) -> np.ndarray:
    return np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])


def _foreground(img: np.ndarray) -> np.ndarray:
    bg = float(np.median(_border(img)))
    return np.abs(img.astype(np.float32) - bg) > 30


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.bmp"))
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn") / "data"
    return root, synthetic.generate(root, SMALL, seed=7)


def test_layout_and_names(small):
    root, df = small
    assert list(df.columns) == ["path", "cell", "label", "sex"]
    assert sorted(df.cell.unique()) == ["c0000", "c0001"]
    assert sorted(df.groupby("cell").sex.first()) == ["F", "M"]
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert on_disk == set(df.path)
    assert not list(root.parent.glob("data.tmp-*"))

    for cell, g in df.groupby("cell"):
        sex = g.sex.iloc[0]
        names = {Path(p).name for p in g.path}
        assert all(Path(p).parent.as_posix() == f"single_chromosomes/{cell}" for p in g.path)
        autosomes = {f"{cell} {c}{s}.bmp" for c in range(1, 23) for s in "ab"}
        sex_files = {f"{cell} 23.bmp", f"{cell} 24.bmp"} if sex == "M" else {f"{cell} 23a.bmp", f"{cell} 23b.bmp"}
        assert len(g) == 46 and names == autosomes | sex_files
        counts = g.label.value_counts()
        assert (counts.loc[1:22] == 2).all()
        assert counts.get(23, 0) == (1 if sex == "M" else 2)
        assert counts.get(24, 0) == (1 if sex == "M" else 0)
        for p, label in zip(g.path, g.label):
            assert Path(p).stem.split(" ")[1].rstrip("ab") == str(label)


def test_sex_counts_follow_male_fraction(tmp_path):
    df = synthetic.generate(tmp_path / "d", {**SMALL, "n_cells": 8, "male_fraction": 0.25, "chr1_length_px": 30}, seed=1)
    sexes = df.groupby("cell").sex.first()
    n_male = int((sexes == "M").sum())
    assert n_male == 2
    assert (df.label == 24).sum() == n_male
    assert (df.label == 23).sum() == n_male + 2 * (8 - n_male)


def test_images_uint8_2d_with_margin(small):
    root, df = small
    sizes = set()
    for rel in df.path:
        img = _read(root, rel)
        assert img.dtype == np.uint8 and img.ndim == 2
        sizes.add(img.shape)
        fg = _foreground(img)
        assert fg.any(), rel
        rows, cols = np.nonzero(fg.any(axis=1))[0], np.nonzero(fg.any(axis=0))[0]
        assert rows[0] >= 3 and cols[0] >= 3, rel
        assert rows[-1] <= img.shape[0] - 4 and cols[-1] <= img.shape[1] - 4, rel
    assert len(sizes) > 10  # tight crops, not a fixed canvas


def test_deterministic(tmp_path, small):
    root, df = small
    again = synthetic.generate(tmp_path / "again", SMALL, seed=7)
    pd.testing.assert_frame_equal(df, again)
    assert _digests(root) == _digests(tmp_path / "again")

    synthetic.generate(tmp_path / "other", SMALL, seed=8)
    a, b = _digests(root), _digests(tmp_path / "other")
    common = set(a) & set(b)
    assert common and sum(a[k] != b[k] for k in common) > len(common) // 2


def test_regenerate_replaces_existing_dir(tmp_path):
    out = tmp_path / "nested" / "out"
    synthetic.generate(out, {**SMALL, "n_cells": 2}, seed=0)
    df = synthetic.generate(out, {**SMALL, "n_cells": 1}, seed=0)
    assert sorted(p.name for p in (out / "single_chromosomes").iterdir()) == ["c0000"]
    assert len(df) == 46
    assert [p.name for p in (tmp_path / "nested").iterdir()] == ["out"]


def test_relative_lengths(tmp_path):
    params = {"n_cells": 6, "chr1_length_px": 80, "width_px": 7}
    df = synthetic.generate(tmp_path / "d", params, seed=3)
    root = tmp_path / "d"
    df["area"] = [int(_foreground(_read(root, p)).sum()) for p in df.path]
    df["extent"] = [max(_foreground(_read(root, p)).shape) for p in df.path]
    area = df.groupby("label").area.median()
    assert df[df.label == 1].extent.median() > 2 * df[df.label == 21].extent.median()
    assert area[1] > 3 * area[21]
    rel = pd.Series(synthetic.REL_LENGTH).loc[area.index]
    assert area.rank().corr(rel.rank()) > 0.9


@pytest.mark.parametrize("style", ["q", "g"])
def test_polarity(tmp_path, style):
    df = synthetic.generate(tmp_path / style, {**SMALL, "n_cells": 1, "band_style": style}, seed=2)
    for rel in df.path[::5]:
        img = _read(tmp_path / style, rel)
        border = float(np.median(_border(img)))
        obj = float(np.percentile(img, 99 if style == "q" else 1))
        if style == "q":
            assert border < 50 and obj > border + 80
        else:
            assert border > 200 and obj < border - 80


def _axial_profile(img: np.ndarray, samples: int) -> np.ndarray:
    """Brightness along an upright chromosome, resampled to ``samples`` points."""
    p = img.astype(np.float32).max(axis=1)
    idx = np.nonzero(p > p.max() * 0.3)[0]
    p = p[idx[0] : idx[-1] + 1]
    return np.interp(np.linspace(0, 1, samples), np.linspace(0, 1, p.size), p)


def _pattern_similarity(label_a: int, label_b: int, blur: float, samples: int) -> float:
    """Mean correlation of the axial profiles of ``label_a`` and ``label_b`` drawn with different
    seeds: each instance jitters its band widths, which shifts single pairs' profiles a lot."""
    style = {"blur_sigma": blur, "noise_sigma": 0.0}
    params = {"max_bend_deg": 0, "length_jitter": 0.0}
    pairs = [(synthetic.render_chromosome(label_a, np.random.default_rng(k), params, style),
              synthetic.render_chromosome(label_b, np.random.default_rng(k + 100), params, style)) for k in range(8)]
    return float(np.mean([np.corrcoef(_axial_profile(a, samples), _axial_profile(b, samples))[0, 1] for a, b in pairs]))


def test_class_pattern_independent_of_seed():
    img = synthetic.render_chromosome(5, np.random.default_rng(1), {}, {})
    assert img.dtype == np.uint8 and img.ndim == 2
    same, diff = _pattern_similarity(5, 5, 0.0, 64), _pattern_similarity(5, 4, 0.0, 64)
    assert same > 0.5 and same > diff + 0.3, (same, diff)


def _axis_tilt_deg(img: np.ndarray) -> float:
    """Angle between the foreground's principal axis and the vertical, from second moments."""
    m = cv2.moments(_foreground(img).astype(np.uint8), binaryImage=True)
    # Orientation of the major axis measured from the x axis; 90 degrees is vertical.
    angle = 0.5 * np.degrees(np.arctan2(2 * m["mu11"], m["mu20"] - m["mu02"]))
    return abs(90.0 - abs(angle))


def test_upright_by_default(small):
    # Karyotyping crops come upright: long axis vertical (a small bend allowed), taller than wide.
    root, df = small
    assert synthetic.DEFAULTS["rotate"] is False
    # 21, 22 and Y are barely longer than wide: their second-moment axis says little.
    images = [_read(root, rel) for rel in df.path[df.label <= 20]]
    tilts = [_axis_tilt_deg(img) for img in images]
    assert max(tilts) < 10, max(tilts)
    assert all(img.shape[0] > img.shape[1] for img in images)


def test_rotate_option_turns_chromosomes(tmp_path):
    df = synthetic.generate(tmp_path / "r", {**SMALL, "n_cells": 1, "rotate": True}, seed=7)
    tilts = np.array([_axis_tilt_deg(_read(tmp_path / "r", rel)) for rel in df.path])
    # Uniform angles: about two thirds lie more than 30 degrees from vertical.
    assert (tilts > 30).mean() > 0.4, np.sort(tilts)


def test_chromosome_1_nearly_fills_a_64_px_crop(tmp_path):
    # crop_filter keeps a 2 px margin and shrinks longer crops: chromosome 1 at the default length
    # spans about 60 px, more in cells condensed less (length_jitter).
    df = synthetic.generate(tmp_path / "d", {"n_cells": 6}, seed=5)
    heights = [np.ptp(np.nonzero(_foreground(_read(tmp_path / "d", rel)).any(axis=1))[0]) + 1
               for rel in df.path[df.label == 1]]
    assert 50 <= np.median(heights) <= 66, heights


@pytest.mark.parametrize("label", [21, 22, 24])
def test_small_chromosomes_keep_a_resolved_band_pattern(label):
    p = synthetic.DEFAULTS
    n = synthetic.band_count(label, p["chr1_length_px"], p["band_px"])
    length = p["chr1_length_px"] * synthetic.REL_LENGTH[label] / synthetic.REL_LENGTH[1]
    assert n >= 3 and length / n >= 3.0  # bands at least 3 px wide at HR


def test_small_chromosome_patterns_differ():
    # 21, 22 and Y are about equally long: their band patterns must tell them apart at HR blur.
    for a, b in [(21, 22), (21, 24), (22, 24)]:
        same, diff = _pattern_similarity(a, a, 0.8, 32), _pattern_similarity(a, b, 0.8, 32)
        assert same > diff + 0.2, (a, b, same, diff)


def test_unknown_param_raises(tmp_path):
    with pytest.raises(ValueError, match="bogus_key"):
        synthetic.generate(tmp_path / "x", {"bogus_key": 1}, seed=0)
    with pytest.raises(ValueError, match="band_style"):
        synthetic.generate(tmp_path / "x", {"band_style": "c"}, seed=0)
    with pytest.raises(ValueError, match="bogus_key"):
        synthetic.render_chromosome(1, np.random.default_rng(0), {"bogus_key": 1}, {})
    with pytest.raises(ValueError, match="band_px must be > 0, got 0"):
        synthetic.generate(tmp_path / "x", {"band_px": 0}, seed=0)
    assert not (tmp_path / "x").exists()


def test_defaults_are_complete():
    assert set(synthetic.DEFAULTS) == {
        "n_cells", "male_fraction", "band_style", "chr1_length_px", "width_px", "band_px", "length_jitter",
        "stain_jitter", "blur_sigma", "noise_sigma", "max_bend_deg", "rotate",
    }
    assert synthetic.DEFAULTS["n_cells"] == 24 and synthetic.DEFAULTS["band_style"] == "q"
