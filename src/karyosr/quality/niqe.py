"""NIQE: the Natural Image Quality Evaluator (no-reference, lower is better).

Implemented from Mittal, Soundararajan and Bovik, "Making a 'completely blind' image quality
analyzer", IEEE Signal Processing Letters 20(3), 2013, and the behaviour of the authors'
released MATLAB code (``computequality.m`` / ``estimatemodelparam.m``). Written from the
published description; no code was copied.

API
---
``niqe_features(image, patch_size=96)``
    (n_patches, 36) array: 18 features at full scale then 18 at half scale for every
    non-overlapping ``patch_size`` x ``patch_size`` patch, row-major patch order. A patch whose
    distribution fits are undefined (see "Degenerate patches") has NaN in the affected features.
``fit_pristine(images, patch_size=96, sharpness_threshold=0.75)``
    ``(mu_prisparam (36,), cov_prisparam (36, 36))`` of the multivariate Gaussian (MVG)
    pristine model.
``niqe(image, mu_prisparam, cov_prisparam, patch_size=96)``
    The score, a finite float >= 0.
``PristineModel(mu, cov, features, patch_size)``
    A model with what scoring against it must repeat: the feature set and the patch size it was
    fitted with; ``model.score(image)`` is ``niqe`` with those.
``save_model(path, model)`` / ``load_model(path)``
    See "Model files".

All three image functions also take keyword-only ``features="paper"`` (default) or
``"release"``; see "Feature definition".

Algorithm
---------
1. The image becomes a 2-D float64 array on the 0-255 scale: uint8 as is, uint16 times
   255/65535, bool as 0/255, other integer types and floats taken as already 0-255 (not
   clipped, not rounded). An (H, W, 1) array is squeezed; an (H, W, 3|4) array is accepted
   only when its first three channels are identical (a grey image read as colour, e.g. by
   ``cv2.imread`` without flags), otherwise ValueError: NIQE here is a grey-level measure.
   Non-finite values raise ValueError.
2. The image is cropped to a whole number of patches (top-left kept), as the reference does.
3. MSCN coefficients: mu = w * I, sigma = sqrt(|w * I^2 - mu^2|), MSCN = (I - mu) / (sigma + 1)
   with w the 7x7 Gaussian window (sigma 7/6, normalised to sum 1) and replicated borders
   (MATLAB ``imfilter(..., 'replicate')``). MSCN values below 1e-9 in magnitude are set to
   exactly 0: they are floating-point residue of I - mu in constant regions, and left alone
   their random signs would decide which side of the asymmetric fit they dilute.
4. Per patch, 18 features (below). Then the (cropped) image is downscaled by 2 with MATLAB's
   ``imresize(I, 0.5)`` default (``karyosr.resize.imresize``: bicubic, a = -0.5, with
   antialiasing, symmetric borders, no clipping of the float image) -- and step 3-4 repeat on patches of ``patch_size / 2``. Row k of the result is
   [18 features of patch k at full scale, 18 of the same area at half scale].
5. Distribution fits use moment matching against a lookup over the shape grid
   alpha = 0.2:0.001:10 (9801 values), taking the nearest grid value (ties to the smaller
   alpha, as MATLAB's ``min``):
   - GGD: rho = E[x^2] / E[|x|]^2 matched to Gamma(1/a)Gamma(3/a)/Gamma(2/a)^2;
     features (alpha, sigma^2 = E[x^2]).
   - AGGD (BRISQUE): sigma_l^2 = mean of x^2 over x < 0, sigma_r^2 over x > 0,
     g = sigma_l/sigma_r, r = E[|x|]^2 / E[x^2], R = r (g^3 + 1)(g + 1) / (g^2 + 1)^2 matched to
     Gamma(2/a)^2 / (Gamma(1/a)Gamma(3/a)); beta_{l,r} = sigma_{l,r} sqrt(Gamma(1/a)/Gamma(3/a));
     eta (the mean) = (beta_r - beta_l) Gamma(2/a)/Gamma(1/a).
   The lookup is done with a binary search on the (strictly monotone) ratio curve, for all
   patches at once.

Feature definition (the paper and the release differ; choose with ``features``)
------------------------------------------------------------------------------
- ``"paper"`` (default; the paper's text, BRISQUE's feature set): [GGD alpha, GGD
  sigma^2] of the MSCN patch, then for each pairwise product (horizontal, vertical, main
  diagonal, secondary diagonal) [AGGD alpha, eta, sigma_l^2, sigma_r^2]. Products pair each
  coefficient with its right / lower / lower-right / lower-left neighbour *inside the patch*
  (p(p-1) or (p-1)^2 products; no wrap-around).
- ``"release"`` (what ``computefeature.m`` of the MATLAB release and BasicSR's
  ``basicsr/metrics/niqe.py`` compute, the features of their published pristine models
  ``modelparameters.mat`` / ``niqe_pris_params.npz``): the image is first rounded to whole grey
  levels (MATLAB reads 8-bit images; BasicSR rounds for the same reason), then
  [AGGD alpha, (beta_l + beta_r)/2] of the MSCN patch, and for the products
  [alpha, eta, beta_l, beta_r] (un-squared scale parameters), products taken with
  ``circshift`` inside the patch, i.e. wrapping around (shifts (0,1), (1,0), (1,1), (1,-1)).
  Window, MSCN, half-scale resize and patch grid are those of steps 2-4 (the release's
  choices too). The published models were fitted at patch_size 96 on natural images.
  One deliberate difference: MSCN residue below 1e-9 is zeroed (step 3), which only changes
  patches of exactly constant grey, where the release fits rounding noise.

The pipeline fits its own model with ``"paper"`` features at its own patch size; a published
model must be scored with ``"release"`` features at 96, which ``PristineModel`` carries.

Pristine model (``fit_pristine``)
---------------------------------
Per image, patch sharpness = mean of the local sigma map (step 3, full scale) over the patch;
patches with sharpness > ``sharpness_threshold`` x (that image's maximum patch sharpness) are
kept (strict ``>``, so a flat image contributes nothing). Kept rows of all images are pooled;
mu = column-wise mean ignoring NaN (``nanmean``), cov = sample covariance (N - 1) of the rows
without any NaN (``nancov``). At least 2 complete rows are required (ValueError otherwise).
The covariance is usually rank-deficient for small training sets; the score uses a
pseudo-inverse, so that is allowed.

Score (``niqe``)
----------------
All patches of the test image (no sharpness selection), mu_d = nanmean over patches,
cov_d = covariance of the complete (NaN-free) rows -- all zeros when only one patch is
complete -- and NIQE = sqrt((mu_p - mu_d)^T pinv((cov_p + cov_d) / 2) (mu_p - mu_d)). The
pseudo-inverse uses MATLAB's default tolerance (max(shape) * eps * largest singular value);
a tiny negative quadratic form from rounding is clamped to 0 before the square root.

Model files
-----------
``save_model`` writes an ``.npz`` to exactly ``path`` (no suffix added) with ``mu_prisparam``,
``cov_prisparam``, ``features`` and ``patch_size``. ``load_model`` recognises the format from
the content, not the name, and reads:
- such a file (the tags say how to score);
- BasicSR's ``.npz`` (``mu_pris_param`` (1, 36), ``cov_pris_param``, optionally
  ``gaussian_window``, which must be the 7x7, sigma 7/6 window used here) -- untagged, taken as
  ``"release"`` features at patch size 96, as published;
- a MATLAB v4-v7.2 ``.mat`` with ``mu_prisparam`` and ``cov_prisparam`` (the release's
  ``modelparameters.mat``) -- untagged, taken the same way.
An untagged ``.npz`` with the MATLAB names is refused: it may be a pipeline model written
before the tags (``"paper"`` features) or a converted published one, and guessing would score
with the wrong features. Tags in a file override the inference.

Degenerate patches, flat and tiny images (defined behaviour)
------------------------------------------------------------
- A fit is undefined when the sample has no spread (E[x^2] = 0) or, for the AGGD, has no
  negative or no positive value; the patch's features are then NaN (as in MATLAB, where the
  empty means give NaN). Single-chromosome images are mostly uniform background, so this is
  normal for background patches of clean images; such rows are skipped as described above.
- A flat image, or any image in which *no* patch has complete features, raises
  ValueError("... no patch with usable NIQE features (flat image?) ..."): there is no
  distribution to compare, and returning a made-up number would silently rank a blank image.
  NIQE never returns NaN or inf.
- ``patch_size`` must be an even integer >= 8 (the half-scale patch must be an integer size
  with enough samples for the fits); otherwise ValueError.
- An image smaller than one patch in either dimension raises ValueError naming the image
  size and the patch size. Chromosome crops (20-150 px, 96x96 padded) therefore need a
  patch_size of 32 or 48, not the usual 96.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import io as sio
from scipy.ndimage import correlate1d
from scipy.special import gamma as _gamma
from scipy.special import gammaln as _gammaln

from karyosr.resize import imresize

__all__ = [
    "N_FEATURES",
    "PristineModel",
    "fit_pristine",
    "load_model",
    "mscn",
    "niqe",
    "niqe_features",
    "save_model",
    "to_gray255",
]

FEATURES_PER_SCALE = 18
N_FEATURES = 2 * FEATURES_PER_SCALE
FEATURE_SETS = ("paper", "release")
# How the published pristine models were fitted; assumed for a model file without tags.
PUBLISHED_FEATURES = "release"
PUBLISHED_PATCH_SIZE = 96

GAUSS_SIZE = 7
GAUSS_SIGMA = 7.0 / 6.0
MSCN_C = 1.0
# |MSCN| below this is floating-point residue of I - mu in constant regions.
MSCN_ZERO = 1e-9

# Shape grid 0.2:0.001:10 of the reference code, built from integers to be exact.
ALPHA_GRID = np.arange(200, 10001, dtype=np.float64) / 1000.0
# Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)): increasing in a, from ~0 to 0.75.
_R_AGGD = np.exp(2.0 * _gammaln(2.0 / ALPHA_GRID) - _gammaln(1.0 / ALPHA_GRID) - _gammaln(3.0 / ALPHA_GRID))
# The GGD ratio Gamma(1/a)Gamma(3/a)/Gamma(2/a)^2 is 1 / _R_AGGD, decreasing in a; negated it
# increases, so both lookups can use the same nearest-on-increasing-curve search.
_NEG_R_GGD = -1.0 / _R_AGGD


# ----------------------------------------------------------------------------------------
# Shared image helpers (also used by karyosr.quality.piqe)


def to_gray255(image) -> np.ndarray:
    """2-D float64 copy of ``image`` on the 0-255 scale (see the module docstring, step 1)."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        if not (np.array_equal(a[:, :, 0], a[:, :, 1]) and np.array_equal(a[:, :, 0], a[:, :, 2])):
            raise ValueError(
                f"expected a grayscale image, got a colour image of shape {a.shape}; convert it to grey first"
            )
        a = a[:, :, 0]
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got an array of shape {a.shape}")
    if a.dtype == np.bool_:
        out = a.astype(np.float64) * 255.0
    elif a.dtype == np.uint8:
        out = a.astype(np.float64)
    elif a.dtype == np.uint16:
        out = a.astype(np.float64) * (255.0 / 65535.0)
    elif np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating):
        out = a.astype(np.float64)
    else:
        raise ValueError(f"unsupported image dtype {a.dtype}; expected uint8, uint16, an integer or a float type")
    if out.size and not np.isfinite(out).all():
        raise ValueError("image contains NaN or infinite values")
    return out


def _gauss_1d() -> np.ndarray:
    x = np.arange(GAUSS_SIZE, dtype=np.float64) - (GAUSS_SIZE - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * GAUSS_SIGMA * GAUSS_SIGMA))
    return g / g.sum()


_GAUSS = _gauss_1d()


def _gauss_filter(a: np.ndarray) -> np.ndarray:
    # The normalised 7x7 window is the outer product of the normalised 1-D one.
    return correlate1d(correlate1d(a, _GAUSS, axis=0, mode="nearest"), _GAUSS, axis=1, mode="nearest")


def mscn(image255: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(MSCN coefficients, local sigma) of a 2-D float image on the 0-255 scale."""
    img = np.asarray(image255, dtype=np.float64)
    mu = _gauss_filter(img)
    sigma = np.sqrt(np.abs(_gauss_filter(img * img) - mu * mu))
    coeffs = (img - mu) / (sigma + MSCN_C)
    coeffs[np.abs(coeffs) < MSCN_ZERO] = 0.0
    return coeffs, sigma


def blocks(a: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping ``size`` x ``size`` tiles of ``a`` (cropped to whole tiles), (n, size, size), row-major."""
    rows, cols = a.shape[0] // size, a.shape[1] // size
    a = a[: rows * size, : cols * size]
    return a.reshape(rows, size, cols, size).swapaxes(1, 2).reshape(rows * cols, size, size)


# ----------------------------------------------------------------------------------------
# Moment-matching fits, vectorised over the rows of (n, m) samples


def _nearest_alpha(curve: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """ALPHA_GRID value whose ``curve`` value (strictly increasing) is nearest to each target."""
    idx = np.searchsorted(curve, targets)
    idx = np.clip(idx, 1, curve.size - 1)
    lower = curve[idx - 1]
    upper = curve[idx]
    take_lower = np.abs(targets - lower) <= np.abs(upper - targets)
    return ALPHA_GRID[np.where(take_lower, idx - 1, idx)]


def _ggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, sigma^2) per row; NaN where the row has no spread."""
    mean_sq = np.mean(x * x, axis=1)
    mean_abs = np.mean(np.abs(x), axis=1)
    ok = mean_sq > 0
    alpha = np.full(x.shape[0], np.nan)
    rho = mean_sq[ok] / (mean_abs[ok] ** 2)
    alpha[ok] = _nearest_alpha(_NEG_R_GGD, -rho)
    return alpha, np.where(ok, mean_sq, np.nan)


def _aggd_fit(x: np.ndarray):
    """(alpha, beta_l, beta_r, sigma_l, sigma_r) per row; NaN where a side is empty."""
    sq = x * x
    neg, pos = x < 0, x > 0
    n_neg, n_pos = neg.sum(axis=1), pos.sum(axis=1)
    mean_sq = sq.mean(axis=1)
    ok = (n_neg > 0) & (n_pos > 0) & (mean_sq > 0)
    nan = np.full(x.shape[0], np.nan)
    alpha, beta_l, beta_r, sigma_l, sigma_r = nan.copy(), nan.copy(), nan.copy(), nan.copy(), nan.copy()
    if not ok.any():
        return alpha, beta_l, beta_r, sigma_l, sigma_r
    sq_ok, neg_ok, pos_ok = sq[ok], neg[ok], pos[ok]
    s_l = np.sqrt(np.where(neg_ok, sq_ok, 0.0).sum(axis=1) / n_neg[ok])
    s_r = np.sqrt(np.where(pos_ok, sq_ok, 0.0).sum(axis=1) / n_pos[ok])
    g = s_l / s_r
    r_hat = np.abs(x[ok]).mean(axis=1) ** 2 / mean_sq[ok]
    r_norm = r_hat * (g**3 + 1.0) * (g + 1.0) / (g * g + 1.0) ** 2
    a = _nearest_alpha(_R_AGGD, r_norm)
    scale = np.sqrt(_gamma(1.0 / a) / _gamma(3.0 / a))
    alpha[ok], sigma_l[ok], sigma_r[ok] = a, s_l, s_r
    beta_l[ok], beta_r[ok] = s_l * scale, s_r * scale
    return alpha, beta_l, beta_r, sigma_l, sigma_r


def _pair_products(p: np.ndarray, features: str) -> list[np.ndarray]:
    """Horizontal, vertical, main- and secondary-diagonal neighbour products, each (n, m)."""
    n = p.shape[0]
    if features == "release":
        # circshift(A, [dr dc]) inside the patch: A shifted down dr rows and right dc columns.
        shifts = [(0, 1), (1, 0), (1, 1), (1, -1)]
        return [(p * np.roll(p, s, axis=(1, 2))).reshape(n, -1) for s in shifts]
    return [
        (p[:, :, :-1] * p[:, :, 1:]).reshape(n, -1),
        (p[:, :-1, :] * p[:, 1:, :]).reshape(n, -1),
        (p[:, :-1, :-1] * p[:, 1:, 1:]).reshape(n, -1),
        (p[:, :-1, 1:] * p[:, 1:, :-1]).reshape(n, -1),
    ]


def _scale_features(patches: np.ndarray, features: str) -> np.ndarray:
    """(n, 18) features of MSCN patches (n, s, s)."""
    n = patches.shape[0]
    flat = patches.reshape(n, -1)
    cols = []
    if features == "release":
        a, bl, br, _, _ = _aggd_fit(flat)
        cols += [a, (bl + br) / 2.0]
    else:
        a, var = _ggd_fit(flat)
        cols += [a, var]
    for prod in _pair_products(patches, features):
        a, bl, br, sl, sr = _aggd_fit(prod)
        with np.errstate(invalid="ignore"):
            eta = (br - bl) * np.exp(_gammaln(2.0 / a) - _gammaln(1.0 / a))
        if features == "release":
            cols += [a, eta, bl, br]
        else:
            cols += [a, eta, sl * sl, sr * sr]
    feats = np.column_stack(cols)
    # A row is only meaningful as a whole.
    feats[~np.isfinite(feats).all(axis=1)] = np.nan
    return feats


# ----------------------------------------------------------------------------------------
# Public API


def _check_patch_size(patch_size) -> int:
    if isinstance(patch_size, bool) or not isinstance(patch_size, (int, np.integer)):
        raise ValueError(f"patch_size must be an even integer >= 8, got {patch_size!r}")
    p = int(patch_size)
    if p < 8 or p % 2:
        raise ValueError(f"patch_size must be an even integer >= 8, got {p}")
    return p


def _check_features(features: str) -> str:
    if features not in FEATURE_SETS:
        raise ValueError(f"features must be one of {FEATURE_SETS}, got {features!r}")
    return features


def _features_and_sharpness(image, patch_size: int, features: str) -> tuple[np.ndarray, np.ndarray]:
    p = _check_patch_size(patch_size)
    features = _check_features(features)
    img = to_gray255(image)
    if features == "release":
        img = np.rint(img)
    h, w = img.shape
    if h < p or w < p:
        raise ValueError(
            f"image of size {h}x{w} is smaller than the NIQE patch size {p}x{p}; "
            f"use a smaller patch_size (even, >= 8) or a larger image"
        )
    img = img[: (h // p) * p, : (w // p) * p]
    m1, sigma = mscn(img)
    f1 = _scale_features(blocks(m1, p), features)
    sharpness = blocks(sigma, p).mean(axis=(1, 2))
    m2, _ = mscn(imresize(img, 0.5))
    f2 = _scale_features(blocks(m2, p // 2), features)
    return np.hstack([f1, f2]), sharpness


def niqe_features(image, patch_size: int = 96, *, features: str = "paper") -> np.ndarray:
    """(n_patches, 36) NIQE features; rows of patches without defined fits are NaN."""
    return _features_and_sharpness(image, patch_size, features)[0]


def _mvg(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(nanmean, covariance of complete rows, number of complete rows)."""
    complete = rows[np.isfinite(rows).all(axis=1)]
    k = complete.shape[0]
    if k == 0:
        return np.full(rows.shape[1], np.nan), np.full((rows.shape[1],) * 2, np.nan), 0
    mu = np.nanmean(rows, axis=0)
    cov = np.cov(complete, rowvar=False) if k >= 2 else np.zeros((rows.shape[1], rows.shape[1]))
    return mu, cov, k


def fit_pristine(
    images: list[np.ndarray],
    patch_size: int = 96,
    sharpness_threshold: float = 0.75,
    *,
    features: str = "paper",
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the pristine MVG model (mu (36,), cov (36, 36)) to the sharpest patches of ``images``."""
    images = list(images)
    if not images:
        raise ValueError("fit_pristine needs at least one image")
    th = float(sharpness_threshold)
    if not 0.0 <= th < 1.0:
        raise ValueError(f"sharpness_threshold must be in [0, 1), got {sharpness_threshold!r}")
    kept = []
    for image in images:
        feats, sharpness = _features_and_sharpness(image, patch_size, features)
        kept.append(feats[sharpness > th * sharpness.max()])
    rows = np.vstack(kept)
    mu, cov, k = _mvg(rows)
    if k < 2:
        raise ValueError(
            f"fit_pristine found {k} usable patch(es) (complete features, sharpness above "
            f"{th} x the image maximum) in {len(images)} image(s); at least 2 are needed "
            f"(use more or less flat images, or a smaller patch_size)"
        )
    return mu, cov


def _check_model(mu_prisparam, cov_prisparam, names=("mu_prisparam", "cov_prisparam")):
    """(mu (36,), cov (36, 36)) as float64; ValueError naming the array that is wrong."""
    mu = np.asarray(mu_prisparam, dtype=np.float64)
    # MATLAB and BasicSR store the mean as a (1, 36) row.
    if mu.ndim == 2 and 1 in mu.shape:
        mu = mu.ravel()
    cov = np.asarray(cov_prisparam, dtype=np.float64)
    for name, value, shape in ((names[0], mu, (N_FEATURES,)), (names[1], cov, (N_FEATURES, N_FEATURES))):
        if value.shape != shape:
            raise ValueError(f"pristine model {name} has shape {value.shape}, expected {shape}")
        if not np.isfinite(value).all():
            raise ValueError(f"pristine model {name} contains NaN or infinite values")
    return mu, cov


def niqe(image, mu_prisparam, cov_prisparam, patch_size: int = 96, *, features: str = "paper") -> float:
    """NIQE score of ``image`` against a pristine model (lower is better; finite, >= 0)."""
    mu_p, cov_p = _check_model(mu_prisparam, cov_prisparam)
    feats = niqe_features(image, patch_size, features=features)
    mu_d, cov_d, k = _mvg(feats)
    if k == 0:
        h, w = np.shape(image)[:2]
        raise ValueError(
            f"no patch with usable NIQE features (flat image?) in the {h}x{w} image at patch "
            f"size {patch_size}: every patch lacks variance or sign changes, NIQE is undefined"
        )
    d = mu_p - mu_d
    s = (cov_p + cov_d) / 2.0
    inv = np.linalg.pinv(s, rtol=max(s.shape) * np.finfo(np.float64).eps, hermitian=True)
    q = float(d @ inv @ d)
    if not np.isfinite(q):
        raise ValueError("NIQE distance is not finite (ill-conditioned model covariance)")
    return float(np.sqrt(max(q, 0.0)))


@dataclass(frozen=True)
class PristineModel:
    """A pristine MVG model and how it was fitted, which scoring against it must repeat."""

    mu: np.ndarray  # (36,)
    cov: np.ndarray  # (36, 36)
    features: str  # one of FEATURE_SETS
    patch_size: int

    def __post_init__(self):
        mu, cov = _check_model(self.mu, self.cov)
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "cov", cov)
        object.__setattr__(self, "features", _check_features(self.features))
        object.__setattr__(self, "patch_size", _check_patch_size(self.patch_size))

    def score(self, image) -> float:
        """NIQE of ``image`` with this model's feature set and patch size."""
        return niqe(image, self.mu, self.cov, self.patch_size, features=self.features)


def save_model(path: str | os.PathLike, model: PristineModel) -> None:
    """Write ``model`` to exactly ``path`` (no suffix added) as .npz with its tags."""
    with open(path, "wb") as fh:
        np.savez(fh, mu_prisparam=model.mu, cov_prisparam=model.cov, features=np.str_(model.features),
                 patch_size=np.int64(model.patch_size))


# Array names of the two published models: BasicSR's .npz and the MATLAB release's .mat.
BASICSR_NAMES = ("mu_pris_param", "cov_pris_param")
MATLAB_NAMES = ("mu_prisparam", "cov_prisparam")


def _read_arrays(path: Path) -> tuple[dict, str]:
    """The arrays of an .npz or MATLAB .mat file, and which of the two it is."""
    with open(path, "rb") as fh:
        head = fh.read(128)
    if head.startswith(b"PK"):
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}, "npz"
    if head.startswith(b"\x89HDF"):
        raise ValueError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; save with -v7")
    try:
        return sio.loadmat(path), "mat"
    except Exception as exc:  # scipy raises assorted types for non-MAT content
        raise ValueError(f"{path}: neither an .npz nor a readable MATLAB .mat file ({exc})") from exc


def load_model(path: str | os.PathLike) -> PristineModel:
    """A model written by ``save_model``, BasicSR's ``niqe_pris_params.npz`` or the MATLAB
    release's ``modelparameters.mat`` (see "Model files")."""
    path = Path(path)
    arrays, kind = _read_arrays(path)
    names = BASICSR_NAMES if kind == "npz" and BASICSR_NAMES[0] in arrays else MATLAB_NAMES
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ValueError(f"{path}: missing array(s) {missing}; expected {list(MATLAB_NAMES)} (MATLAB, this "
                         f"package) or {list(BASICSR_NAMES)} (BasicSR)")
    tagged = "features" in arrays
    if not tagged and kind == "npz" and names == MATLAB_NAMES:
        raise ValueError(
            f"{path}: no 'features' tag, so it is unknown which NIQE features it was fitted with: a model "
            f"this pipeline wrote before models were tagged ('paper' features; refit it, e.g. snakemake "
            f"--forcerun fit_niqe) or a published model converted to .npz (give the original .mat, or add "
            f"features='release' and patch_size=96 to the file)")
    if "gaussian_window" in arrays:
        window = np.asarray(arrays["gaussian_window"], dtype=np.float64)
        if window.shape != (GAUSS_SIZE, GAUSS_SIZE) or not np.allclose(window, np.outer(_GAUSS, _GAUSS), rtol=0, atol=1e-6):
            raise ValueError(f"{path}: gaussian_window of shape {window.shape} is not the {GAUSS_SIZE}x{GAUSS_SIZE}, "
                             f"sigma 7/6 window the NIQE features are computed with")
    features = str(np.asarray(arrays["features"]).squeeze()) if tagged else PUBLISHED_FEATURES
    patch_size = arrays.get("patch_size", PUBLISHED_PATCH_SIZE)
    try:
        mu, cov = _check_model(arrays[names[0]], arrays[names[1]], names)
        patch_size = np.asarray(patch_size).squeeze().item()
        return PristineModel(mu, cov, features, patch_size)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
