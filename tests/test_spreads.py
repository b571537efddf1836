import math

import cv2
import numpy as np
import pandas as pd
import pytest

from karyosr.dataset import registration, spreads
from karyosr.resize import imresize

SMALL = {"view_px": 512, "low_px": 512, "ratios": [4, 10]}


@pytest.fixture(scope="module")
def series():
    return spreads.magnification_series(SMALL, seed=3)


def test_deterministic_from_seed(series):
    again = spreads.magnification_series(SMALL, seed=3)
    assert np.array_equal(series.view, again.view)
    assert series.low.keys() == again.low.keys()
    for label in series.low:
        assert np.array_equal(series.low[label], again.low[label])
    pd.testing.assert_frame_equal(series.truth, again.truth)
    other = spreads.magnification_series(SMALL, seed=4)
    assert not np.array_equal(series.view, other.view)
    assert not np.allclose(series.truth[["cx", "cy"]].to_numpy(), other.truth[["cx", "cy"]].to_numpy())
    # a second slide of the same seed is a different slide
    assert not np.array_equal(series.view, spreads.magnification_series(SMALL, seed=3, slide_index=1).view)


def test_shapes_labels_and_truth_ranges(series):
    p = spreads.resolve_params(SMALL)
    assert series.view.shape == (512, 512) and series.view.dtype == np.uint8
    assert sorted(series.low) == ["10x", "4x"]
    t = series.truth.set_index("magnification")
    assert list(t.nominal_ratio.loc[["10x", "4x"]]) == [4.0, 10.0]
    for label, img in series.low.items():
        assert img.shape == (512, 512) and img.dtype == np.uint8
        row = t.loc[label]
        assert abs(row.scale / row.nominal_ratio - 1) <= p["ratio_error"]
        assert abs(row.rotation_deg) <= p["max_rotation_deg"]
        # the view lies wholly inside every low-magnification capture, but covers only part of it
        corners = series.transform(label).corners(series.view.shape)
        assert corners.min() > 0 and corners[:, 0].max() < 511 and corners[:, 1].max() < 511
        assert registration.footprint_overlap(series.transform(label), series.view.shape, img.shape) == 1.0
        assert np.ptp(corners[:, 0]) < 0.3 * 512


def test_view_is_a_spread(series):
    """46 chromosomes (Q look: bright on dark), plus nuclei/debris, uneven background."""
    v = series.view.astype(np.float32)
    bg = np.median(v)
    assert bg < 40
    fg = v > bg + 40
    n, _, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    big = stats[1:, cv2.CC_STAT_AREA] >= 30
    # some chromosomes touch or overlap, some leave the view: fewer blobs than 46 but many
    assert 15 <= big.sum() <= 60
    assert 0.02 < fg.mean() < 0.4


def test_g_band_look():
    s = spreads.magnification_series({**SMALL, "band_style": "g", "ratios": [4]}, seed=1)
    v = s.view.astype(np.float32)
    assert np.median(v) > 150  # light background, dark chromosomes
    assert (v < np.median(v) - 60).mean() > 0.01
    low = s.low["10x"]
    assert np.percentile(low, 99) < 255  # bright-field exposure keeps the background unsaturated


def _lr_correlation(low, view, transform, nominal, psf):
    reg = registration.Registration(transform, 1.0, 1.0, "truth", nominal, view.shape, None)
    lr, hr = registration.cut_pair(low, view, reg, scale=int(nominal), margin=2.0)
    assert hr.shape == (lr.shape[0] * int(nominal), lr.shape[1] * int(nominal))
    down = imresize(hr.astype(np.float32), scale=1.0 / nominal, output_shape=lr.shape)
    down = cv2.GaussianBlur(down, (0, 0), sigmaX=psf)
    return float(np.corrcoef(down.ravel(), lr.astype(np.float32).ravel())[0, 1])


def test_truth_reproduces_the_low_magnification_images(series):
    """The view, carried through the recorded transform and PSF, is the low-magnification image;
    moving the transform half a low-magnification pixel or 1% in scale makes the match worse."""
    for label, low in series.low.items():
        t = series.transform(label)
        row = series.truth.set_index("magnification").loc[label]
        at_truth = _lr_correlation(low, series.view, t, row.nominal_ratio, row.psf_sigma)
        assert at_truth > 0.9, (label, at_truth)
        for dx, dy, ds, dr in ((0.5, 0, 1, 0), (-0.5, 0, 1, 0), (0, 0.5, 1, 0), (0, -0.5, 1, 0),
                               (0, 0, 1.01, 0), (0, 0, 0.99, 0)):
            moved = registration.Transform(t.cx + dx, t.cy + dy, t.scale * ds, t.rotation_deg + dr)
            assert _lr_correlation(low, series.view, moved, row.nominal_ratio, row.psf_sigma) < at_truth


def test_generate_writes_layout_and_truth(tmp_path):
    files, truth = spreads.generate(tmp_path / "series", {**SMALL, "view_px": 256, "low_px": 256,
                                                          "ratios": [4], "n_slides": 2}, seed=5)
    assert sorted(files.path) == ["s000/10x/s000_10x.png", "s000/40x/s000_40x.png",
                                  "s001/10x/s001_10x.png", "s001/40x/s001_40x.png"]
    for rel in files.path:
        img = cv2.imread(str(tmp_path / "series" / rel), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.shape == (256, 256)
    on_disk = pd.read_csv(tmp_path / "series" / "registration_truth.csv")
    assert list(on_disk.slide) == ["s000", "s001"]
    assert np.allclose(on_disk.cx, truth.cx)
    assert not list(tmp_path.glob("series.tmp-*"))


@pytest.mark.parametrize("params, words", [
    ({"bogus": 1}, "bogus"),
    ({"band_style": "x"}, "band_style"),
    ({"ratios": [0.5]}, "ratios"),
    ({"ratios": []}, "ratios"),
    ({"view_px": 512, "low_px": 256, "ratios": [1.5]}, "does not fit"),
    ({"low_psf_sigma": [1.0, 0.5]}, "low_psf_sigma"),
    ({"oversample": 9}, "oversample"),
])
def test_bad_params_name_the_key(params, words):
    with pytest.raises(ValueError, match=words):
        spreads.resolve_params(params)


def test_render_signal_is_additive_and_conserves_stain():
    """The PSF blur and the warp only move stain around: its total scales with the pixel area."""
    rng = np.random.default_rng(0)
    a = spreads.Sprite(rng.random((21, 17)).astype(np.float32), 60.0, 50.3)
    b = spreads.Sprite(rng.random((9, 13)).astype(np.float32), 40.7, 70.0)
    ang = math.radians(1.5)
    f2c = np.array([[math.cos(ang), -math.sin(ang), 5.2], [math.sin(ang), math.cos(ang), -3.1]]) / 2.0
    both = spreads.render_signal([a, b], f2c, (80, 80), 2.0)
    sep = spreads.render_signal([a], f2c, (80, 80), 2.0) + spreads.render_signal([b], f2c, (80, 80), 2.0)
    assert np.allclose(both, sep, atol=1e-5)
    total = a.signal.sum() + b.signal.sum()
    assert both.sum() == pytest.approx(total / 4.0, rel=0.02)
