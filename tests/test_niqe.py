"""NIQE (karyosr.niqe): features, pristine model, score behaviour, edge cases, parameter files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io

from karyosr import niqe as N
from karyosr import synthetic
from quality_images import SIZE, degrade, montage

PATCH = 32


@pytest.fixture(scope="module")
def model():
    """Pristine model from 12 clean montages; none of them is used as a test image."""
    return N.fit_pristine([montage(s) for s in range(100, 112)], patch_size=PATCH)


@pytest.fixture(scope="module")
def test_images():
    return [montage(s) for s in (1, 2, 3)]


def _mean_score(images, model, **kw) -> float:
    mu, cov = model
    return float(np.mean([N.niqe(degrade(im, seed=i, **kw), mu, cov, PATCH) for i, im in enumerate(images)]))


# --- features -------------------------------------------------------------------------------


def test_features_shape_and_cropping():
    img = montage(5)
    f = N.niqe_features(img, PATCH)
    assert f.shape == ((SIZE // PATCH) ** 2, 36)
    assert N.niqe_features(img, 48).shape == (16, 36)
    # Cropped to whole patches (top-left kept): 200x150 -> 6x4 patches of 32.
    big = np.pad(img, ((0, 8), (0, 0)), mode="edge")[:200, :150]
    f2 = N.niqe_features(big, PATCH)
    assert f2.shape == (24, 36)
    np.testing.assert_allclose(f2, N.niqe_features(big[:192, :128], PATCH), equal_nan=True)


def test_features_release_variant_shape():
    f = N.niqe_features(montage(5), PATCH, variant="release")
    assert f.shape == (36, 36)
    assert np.isfinite(f).all()
    with pytest.raises(ValueError, match="variant"):
        N.niqe_features(montage(5), PATCH, variant="nope")


def test_flat_background_patches_are_nan_rows():
    # Noise-free montage: pure background patches have no MSCN spread -> NaN features.
    f = N.niqe_features(montage(5, base_noise=0.0), PATCH)
    half1, half2 = f[:, :18], f[:, 18:]
    for half in (half1, half2):
        finite = np.isfinite(half)
        assert (finite.all(axis=1) | (~finite).all(axis=1)).all()  # rows are all-or-nothing
    assert (~np.isfinite(half1).all(axis=1)).any()
    assert np.isfinite(f).all(axis=1).any()


def test_dtypes_give_the_same_features():
    img = np.rint(montage(6)).astype(np.uint8)
    ref = N.niqe_features(img, PATCH)
    np.testing.assert_allclose(N.niqe_features(img.astype(np.uint16) * 257, PATCH), ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(N.niqe_features(img.astype(np.float32), PATCH), ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(N.niqe_features(img[:, :, None], PATCH), ref)
    np.testing.assert_allclose(N.niqe_features(np.dstack([img] * 3), PATCH), ref)
    colour = np.dstack([img, img, 255 - img])
    with pytest.raises(ValueError, match="grayscale"):
        N.niqe_features(colour, PATCH)


def test_distribution_fits_recover_known_shapes():
    rng = np.random.default_rng(0)
    x = np.stack([rng.standard_normal(40000), rng.laplace(size=40000)])
    alpha, var = N._ggd_fit(x)
    assert alpha[0] == pytest.approx(2.0, abs=0.1) and alpha[1] == pytest.approx(1.0, abs=0.1)
    assert var[0] == pytest.approx(1.0, rel=0.05) and var[1] == pytest.approx(2.0, rel=0.05)
    a, bl, br, sl, sr = N._aggd_fit(x)
    assert a[0] == pytest.approx(2.0, abs=0.1)
    # The lookup curve is strictly monotone, which the binary search relies on.
    assert np.all(np.diff(N._R_AGGD) > 0)
    assert N.ALPHA_GRID[0] == 0.2 and N.ALPHA_GRID[-1] == 10.0 and N.ALPHA_GRID.size == 9801


def test_imresize_half_matches_matlab_behaviour_on_ramps():
    ramp = np.tile(np.arange(64.0), (10, 1))
    half = N.imresize_half(ramp)
    assert half.shape == (5, 32)
    # Bicubic with antialiasing reproduces a linear ramp away from the borders: sample i sits at 2i + 0.5.
    np.testing.assert_allclose(half[:, 2:-2], np.tile(2 * np.arange(2, 30) + 0.5, (5, 1)), atol=1e-12)
    np.testing.assert_allclose(N.imresize_half(np.full((9, 8), 7.0)), 7.0)
    assert N.imresize_half(np.zeros((9, 7))).shape == (5, 4)  # ceil(n / 2), as MATLAB


# --- score ----------------------------------------------------------------------------------


def test_score_finite_nonnegative_and_low_for_clean(model, test_images):
    mu, cov = model
    scores = [N.niqe(im, mu, cov, PATCH) for im in test_images]
    assert all(math.isfinite(s) and s >= 0.0 for s in scores)
    assert max(scores) < _mean_score(test_images, model, noise=10.0)


def test_blur_raises_score(model, test_images):
    scores = [_mean_score(test_images, model, blur=s) for s in (0.0, 0.5, 1.0, 1.5, 2.0)]
    assert all(b > a for a, b in zip(scores, scores[1:])), scores


def test_noise_raises_score(model, test_images):
    scores = [_mean_score(test_images, model, noise=s) for s in (0.0, 5.0, 10.0, 20.0)]
    assert all(b > a for a, b in zip(scores, scores[1:])), scores


def test_single_chromosome_image(model):
    # A pipeline-sized 96x96 padded chromosome crop works at patch size 32.
    rng = np.random.default_rng(3)
    chrom = synthetic.render_chromosome(1, rng, {"chr1_length_px": 80}, {})
    pad = np.full((96, 96), int(np.median(chrom[0])), dtype=np.uint8)
    h, w = min(96, chrom.shape[0]), min(96, chrom.shape[1])
    pad[:h, :w] = chrom[:h, :w]
    pad = np.clip(pad + np.random.default_rng(4).normal(0, 2, pad.shape), 0, 255).astype(np.uint8)
    s = N.niqe(pad, *model, patch_size=PATCH)
    assert math.isfinite(s) and s >= 0.0


@pytest.mark.parametrize(
    "flat",
    [np.full((96, 96), 128, np.uint8), np.zeros((64, 64), np.uint16), np.full((64, 96), 3.5)],
    ids=["uint8", "uint16", "float"],
)
def test_flat_image_raises_clear_valueerror(model, flat):
    with pytest.raises(ValueError, match="flat image"):
        N.niqe(flat, *model, patch_size=PATCH)
    # The features themselves are defined: all NaN rows, no exception.
    assert np.isnan(N.niqe_features(flat, PATCH)).all()


@pytest.mark.parametrize("shape", [(20, 100), (100, 31), (5, 5)])
def test_tiny_image_raises_valueerror_naming_sizes(model, shape):
    img = np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)
    msg = rf"{shape[0]}x{shape[1]}.*{PATCH}x{PATCH}"
    with pytest.raises(ValueError, match=msg):
        N.niqe(img, *model, patch_size=PATCH)
    with pytest.raises(ValueError, match=msg):
        N.niqe_features(img, PATCH)


@pytest.mark.parametrize("bad", [7, 6, 33, 0, -32, 32.0, True])
def test_bad_patch_size(bad):
    with pytest.raises(ValueError, match="patch_size"):
        N.niqe_features(np.zeros((96, 96), np.uint8), bad)


def test_bad_inputs_raise_valueerror(model):
    with pytest.raises(ValueError, match="NaN"):
        N.niqe(np.full((64, 64), np.nan), *model, patch_size=PATCH)
    with pytest.raises(ValueError, match="2-D"):
        N.niqe(np.zeros((2, 64, 64)), *model, patch_size=PATCH)
    with pytest.raises(ValueError, match="pristine model"):
        N.niqe(montage(1), np.zeros(18), np.eye(18), PATCH)


# --- pristine model and files ---------------------------------------------------------------


def test_fit_pristine_shapes_and_symmetry(model):
    mu, cov = model
    assert mu.shape == (36,) and cov.shape == (36, 36)
    assert np.isfinite(mu).all() and np.isfinite(cov).all()
    np.testing.assert_allclose(cov, cov.T)
    assert np.linalg.eigvalsh(cov).min() > -1e-9


def test_fit_pristine_sharpness_selection():
    imgs = [montage(s) for s in (100, 101)]
    mu_all, _ = N.fit_pristine(imgs, PATCH, sharpness_threshold=0.0)
    mu_sharp, _ = N.fit_pristine(imgs, PATCH, sharpness_threshold=0.75)
    assert not np.allclose(mu_all, mu_sharp)
    with pytest.raises(ValueError, match="sharpness_threshold"):
        N.fit_pristine(imgs, PATCH, sharpness_threshold=1.0)


def test_fit_pristine_needs_usable_patches():
    with pytest.raises(ValueError, match="usable patch"):
        N.fit_pristine([np.full((96, 96), 10, np.uint8)] * 3, PATCH)
    with pytest.raises(ValueError, match="at least one image"):
        N.fit_pristine([], PATCH)


def test_save_load_npz_round_trip(tmp_path, model):
    mu, cov = model
    path = tmp_path / "pristine.params"  # written to exactly this name
    N.save_params(path, mu, cov)
    assert path.exists()
    mu2, cov2 = N.load_params(path)
    np.testing.assert_array_equal(mu2, mu)
    np.testing.assert_array_equal(cov2, cov)


def test_load_matlab_mat(tmp_path, model):
    mu, cov = model
    path = tmp_path / "modelparameters.mat"
    scipy.io.savemat(path, {"mu_prisparam": mu[None, :], "cov_prisparam": cov})  # MATLAB row vector
    mu2, cov2 = N.load_params(path)
    assert mu2.shape == (36,) and cov2.shape == (36, 36)
    np.testing.assert_array_equal(mu2, mu)
    np.testing.assert_array_equal(cov2, cov)


def test_load_params_errors(tmp_path):
    missing = tmp_path / "missing.mat"
    scipy.io.savemat(missing, {"mu_prisparam": np.zeros((1, 36))})
    with pytest.raises(ValueError, match="cov_prisparam"):
        N.load_params(missing)
    wrong = tmp_path / "wrong.npz"
    with open(wrong, "wb") as fh:
        np.savez(fh, mu_prisparam=np.zeros(18), cov_prisparam=np.eye(18))
    with pytest.raises(ValueError, match="36"):
        N.load_params(wrong)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a parameter file at all" * 10)
    with pytest.raises(ValueError, match="junk.bin"):
        N.load_params(junk)
