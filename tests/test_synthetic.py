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


def test_class_pattern_independent_of_seed():
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(99)
    style = {"blur_sigma": 0.0, "noise_sigma": 0.0}
    params = {"rotate": False, "max_bend_deg": 0, "length_jitter": 0.0}
    a = synthetic.render_chromosome(5, rng_a, params, style)
    b = synthetic.render_chromosome(5, rng_b, params, style)
    c = synthetic.render_chromosome(4, np.random.default_rng(1), params, style)
    assert a.dtype == np.uint8 and a.ndim == 2

    def profile(img):
        # Axial brightness along the (vertical) chromosome, resampled to a fixed length.
        p = img.astype(np.float32).max(axis=1)
        idx = np.nonzero(p > p.max() * 0.3)[0]
        p = p[idx[0] : idx[-1] + 1]
        return np.interp(np.linspace(0, 1, 64), np.linspace(0, 1, p.size), p)

    same = np.corrcoef(profile(a), profile(b))[0, 1]
    diff = np.corrcoef(profile(a), profile(c))[0, 1]
    assert same > 0.8 and same > diff + 0.2


def test_unknown_param_raises(tmp_path):
    with pytest.raises(ValueError, match="bogus_key"):
        synthetic.generate(tmp_path / "x", {"bogus_key": 1}, seed=0)
    with pytest.raises(ValueError, match="band_style"):
        synthetic.generate(tmp_path / "x", {"band_style": "c"}, seed=0)
    with pytest.raises(ValueError, match="bogus_key"):
        synthetic.render_chromosome(1, np.random.default_rng(0), {"bogus_key": 1}, {})
    assert not (tmp_path / "x").exists()


def test_defaults_are_complete():
    assert set(synthetic.DEFAULTS) == {
        "n_cells", "male_fraction", "band_style", "chr1_length_px", "width_px", "length_jitter",
        "stain_jitter", "blur_sigma", "noise_sigma", "max_bend_deg", "rotate",
    }
    assert synthetic.DEFAULTS["n_cells"] == 24 and synthetic.DEFAULTS["band_style"] == "q"
