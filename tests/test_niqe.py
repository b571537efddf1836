"""NIQE (karyosr.quality.niqe): features, pristine model, score behaviour, edge cases, parameter files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io
from scipy.ndimage import convolve
from scipy.special import gamma

from karyosr.dataset import synthetic
from karyosr.quality import niqe as N
from karyosr.resize import imresize
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


def test_features_release_shape():
    f = N.niqe_features(montage(5), PATCH, features="release")
    assert f.shape == (36, 36)
    assert np.isfinite(f).all()
    with pytest.raises(ValueError, match="features"):
        N.niqe_features(montage(5), PATCH, features="nope")


def _release_features_by_the_book(image: np.ndarray, block: int) -> np.ndarray:
    """The MATLAB release / BasicSR feature computation written out literally, patch by patch:
    an independent check of the vectorised one."""
    grid = np.arange(200, 10001) / 1000.0
    r_grid = gamma(2 / grid) ** 2 / (gamma(1 / grid) * gamma(3 / grid))

    def aggd(x):
        x = x.ravel()
        left, right = np.sqrt(np.mean(x[x < 0] ** 2)), np.sqrt(np.mean(x[x > 0] ** 2))
        g = left / right
        r = np.mean(np.abs(x)) ** 2 / np.mean(x**2)
        alpha = grid[np.argmin((r_grid - r * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2) ** 2)]
        scale = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
        return alpha, left * scale, right * scale

    x = np.arange(7) - 3.0
    window = np.exp(-(x[:, None] ** 2 + x[None] ** 2) / (2 * (7 / 6) ** 2))
    window /= window.sum()
    img = np.round(image.astype(np.float64))
    rows, cols = img.shape[0] // block, img.shape[1] // block
    img = img[: rows * block, : cols * block]
    scales = []
    for step in (1, 2):
        mu = convolve(img, window, mode="nearest")
        sigma = np.sqrt(np.abs(convolve(img * img, window, mode="nearest") - mu * mu))
        normalised = (img - mu) / (sigma + 1)
        size = block // step
        feats = []
        for r in range(rows):
            for c in range(cols):
                patch = normalised[r * size:(r + 1) * size, c * size:(c + 1) * size]
                alpha, bl, br = aggd(patch)
                row = [alpha, (bl + br) / 2]
                for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
                    alpha, bl, br = aggd(patch * np.roll(patch, shift, axis=(0, 1)))
                    row += [alpha, (br - bl) * gamma(2 / alpha) / gamma(1 / alpha), bl, br]
                feats.append(row)
        scales.append(np.array(feats))
        img = imresize(img, 0.5)
    return np.hstack(scales)


def test_release_features_are_the_published_computation():
    image = degrade(montage(7), noise=3.0)  # noise everywhere: every patch has both signs
    ours = N.niqe_features(image, 96, features="release")
    np.testing.assert_allclose(ours, _release_features_by_the_book(image, 96), rtol=1e-9, atol=1e-12)
    # 18 per scale x 2 scales, in the order [alpha, (beta_l + beta_r) / 2] + 4 x [alpha, eta, beta_l, beta_r].
    assert ours.shape == (4, 36) and N.N_FEATURES == 36
    alphas = [0, 2, 6, 10, 14]
    for offset in (0, 18):
        assert ((ours[:, [offset + a for a in alphas]] >= 0.2) & (ours[:, [offset + a for a in alphas]] <= 10)).all()
        betas = [offset + 1] + [offset + c + d for c in (2, 6, 10, 14) for d in (2, 3)]
        assert (ours[:, betas] > 0).all()
    # Rounded to whole grey levels first, as MATLAB's 8-bit input.
    np.testing.assert_array_equal(ours, N.niqe_features(np.rint(image).astype(np.uint8), 96, features="release"))


def test_release_features_follow_the_image_when_transposed():
    # Transposing swaps the horizontal and vertical products (columns 2-5 and 6-9 of each scale)
    # and maps each diagonal onto itself; the patch grid is transposed with the image.
    image = degrade(montage(8), noise=3.0)
    f = N.niqe_features(image, 96, features="release")
    ft = N.niqe_features(image.T, 96, features="release")
    per_scale = [0, 1, 6, 7, 8, 9, 2, 3, 4, 5, *range(10, 18)]
    swapped = np.array(per_scale + [18 + c for c in per_scale])
    patches = np.arange(4).reshape(2, 2).T.ravel()
    np.testing.assert_allclose(ft[patches][:, swapped], f, rtol=1e-9, atol=1e-12)


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
    with pytest.raises(ValueError, match=r"pristine model mu_prisparam has shape \(18,\), expected \(36,\)"):
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


def test_save_load_model_round_trip(tmp_path, model):
    mu, cov = model
    path = tmp_path / "pristine.params"  # written to exactly this name
    N.save_model(path, N.PristineModel(mu, cov, "paper", PATCH))
    assert path.exists()
    loaded = N.load_model(path)
    np.testing.assert_array_equal(loaded.mu, mu)
    np.testing.assert_array_equal(loaded.cov, cov)
    assert (loaded.features, loaded.patch_size) == ("paper", PATCH)
    image = montage(1)
    assert loaded.score(image) == N.niqe(image, mu, cov, PATCH)


@pytest.fixture(scope="module")
def release_model():
    """A pristine model fitted, as the published ones, with release features on 96 px patches."""
    return N.fit_pristine([montage(s, size=384) for s in range(200, 206)], patch_size=96, features="release")


def _write_basicsr(path, mu, cov, **extra):
    with open(path, "wb") as fh:
        np.savez(fh, mu_pris_param=mu[None, :], cov_pris_param=cov, **extra)


def test_external_model_with_basicsr_names_scores_with_release_features(tmp_path, release_model):
    mu, cov = release_model
    path = tmp_path / "niqe_pris_params.npz"
    x = np.arange(7) - 3.0
    window = np.exp(-(x[:, None] ** 2 + x[None] ** 2) / (2 * (7 / 6) ** 2))
    _write_basicsr(path, mu, cov, gaussian_window=window / window.sum())
    model = N.load_model(path)
    assert (model.features, model.patch_size) == ("release", 96)  # untagged published model
    np.testing.assert_array_equal(model.mu, mu)
    clean = [montage(s, size=384) for s in (1, 2)]
    scores = {name: np.mean([model.score(degrade(im, seed=i, **kw)) for i, im in enumerate(clean)])
              for name, kw in {"clean": {}, "blur": {"blur": 1.5}, "noise": {"noise": 15.0}}.items()}
    assert scores["clean"] < scores["blur"] and scores["clean"] < scores["noise"], scores
    # The same model scored with the pipeline's own features and patch size is a different number.
    assert model.score(clean[0]) != pytest.approx(N.niqe(clean[0], mu, cov, PATCH))


def test_load_matlab_mat(tmp_path, release_model):
    mu, cov = release_model
    path = tmp_path / "modelparameters.mat"
    scipy.io.savemat(path, {"mu_prisparam": mu[None, :], "cov_prisparam": cov})  # MATLAB row vector
    model = N.load_model(path)
    assert model.mu.shape == (36,) and model.cov.shape == (36, 36)
    assert (model.features, model.patch_size) == ("release", 96)
    np.testing.assert_array_equal(model.mu, mu)
    np.testing.assert_array_equal(model.cov, cov)


def test_load_model_errors(tmp_path):
    missing = tmp_path / "missing.mat"
    scipy.io.savemat(missing, {"mu_prisparam": np.zeros((1, 36))})
    with pytest.raises(ValueError, match=r"missing\.mat: missing array\(s\) \['cov_prisparam'\]"):
        N.load_model(missing)
    wrong = tmp_path / "wrong.npz"
    _write_basicsr(wrong, np.zeros(36), np.eye(18))
    with pytest.raises(ValueError, match=r"wrong\.npz: pristine model cov_pris_param has shape \(18, 18\), "
                                         r"expected \(36, 36\)"):
        N.load_model(wrong)
    window = tmp_path / "window.npz"
    _write_basicsr(window, np.zeros(36), np.eye(36), gaussian_window=np.full((7, 7), 1 / 49))
    with pytest.raises(ValueError, match=r"window\.npz: gaussian_window"):
        N.load_model(window)
    untagged = tmp_path / "untagged.npz"
    with open(untagged, "wb") as fh:
        np.savez(fh, mu_prisparam=np.zeros(36), cov_prisparam=np.eye(36))
    with pytest.raises(ValueError, match=r"untagged\.npz: no 'features' tag"):
        N.load_model(untagged)
    bad_tag = tmp_path / "bad_tag.npz"
    with open(bad_tag, "wb") as fh:
        np.savez(fh, mu_prisparam=np.zeros(36), cov_prisparam=np.eye(36), features="brisque", patch_size=96)
    with pytest.raises(ValueError, match=r"bad_tag\.npz: features must be one of .*'brisque'"):
        N.load_model(bad_tag)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a parameter file at all" * 10)
    with pytest.raises(ValueError, match="junk.bin"):
        N.load_model(junk)
