"""Registration across magnifications: where a high-magnification view lies in a low-magnification image.

The same slide photographed at, say, 40x and 10x gives a view whose footprint in the 10x image is
a small square, scaled by about 1/4, slightly rotated and shifted. Once that footprint is known,
the pair (the LR region, the HR view resampled onto it) is a real LR/HR training pair.

Conventions (every function here):

* Pixel centres sit at integer coordinates, 0-based; (x, y) = (column, row), y points down.
* A :class:`Transform` maps high-magnification view coordinates ``p`` to low-magnification image
  coordinates ``q = c_low + R(rotation) (p - c_view) / scale``, where ``c_view`` is the view's
  centre ``((w - 1) / 2, (h - 1) / 2)``, ``c_low = (cx, cy)``, ``scale`` is the true magnification
  ratio (view pixels per low-magnification pixel) and ``R(a) = [[cos a, -sin a], [sin a, cos a]]``
  (with y down a positive angle turns clockwise on screen).
* The *template* is the view reduced to the low-magnification scale by the nominal ratio with
  :func:`karyosr.resize.imresize` (MATLAB bicubic, antialiased); template pixel ``j`` sits at view
  coordinate ``(j + 0.5) * nominal - 0.5``. Pyramids halve by exact 2x2 averaging, so level-k
  pixel ``i`` sits at level-0 coordinate ``2**k * i + (2**k - 1) / 2``.

Methods (both end with the same coarse-to-fine ECC refinement of a similarity, and both report
the same match score, the Pearson correlation of the warped template with the low-magnification
pixels it covers, so one threshold serves both):

* ``spiral``, the published coarse-to-fine pyramid search: halve both images up to 4 times,
  search every translation of the smallest level in spiral order from the centre outwards
  (optionally stopping at the first batch that reaches ``stop_score``), then refine inside the
  2x2 window of each finer level (``refine_radius`` widens that window by r pixels each side;
  0 is the published window). Translation only, at the nominal ratio.
* ``ncc`` (default): OpenCV ``matchTemplate`` (TM_CCOEFF_NORMED) at a coarse level over a small
  grid of scales and rotations around the nominal ratio.

:func:`exhaustive_search` is the brute-force baseline the pyramid is measured against (the same
score at every full-resolution translation).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from karyosr.resize import imresize

METHODS = ("ncc", "spiral")
MAX_LEVELS = 4
# Smallest template side kept at the coarsest level (pixels).
MIN_COARSE_PX = 16
# Template pixels cropped off each side before matching: imresize fills them partly by mirroring.
TEMPLATE_BORDER = 3
# Positions x template pixels per batch of the NCC scorer (float32 elements): bounds memory.
_BATCH_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class Transform:
    """High-magnification view -> low-magnification image similarity (see the module docstring)."""

    cx: float
    cy: float
    scale: float
    rotation_deg: float

    def matrix(self, view_shape: tuple[int, int]) -> np.ndarray:
        """2x3 float64 affine matrix: view (x, y) -> low-magnification (x, y)."""
        h, w = view_shape[:2]
        a = math.radians(self.rotation_deg)
        lin = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) / self.scale
        centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
        return np.column_stack([lin, np.array([self.cx, self.cy]) - lin @ centre])

    def inverse_matrix(self, view_shape: tuple[int, int]) -> np.ndarray:
        """2x3 float64 affine matrix: low-magnification (x, y) -> view (x, y)."""
        return cv2.invertAffineTransform(self.matrix(view_shape))

    def corners(self, view_shape: tuple[int, int]) -> np.ndarray:
        """(4, 2) low-magnification coordinates of the view's outer pixel edges (TL, TR, BR, BL)."""
        h, w = view_shape[:2]
        pts = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
        m = self.matrix(view_shape)
        return pts @ m[:, :2].T + m[:, 2]

    def as_dict(self) -> dict:
        return {"cx": self.cx, "cy": self.cy, "scale": self.scale, "rotation_deg": self.rotation_deg}


@dataclass(frozen=True)
class Registration:
    """Result of :func:`register`. Use the pair only when ``reason`` is None."""

    transform: Transform
    score: float
    overlap: float
    method: str
    nominal_ratio: float
    view_shape: tuple[int, int]
    reason: str | None
    seconds: float = 0.0
    info: dict = field(default_factory=dict, compare=False)

    @property
    def accepted(self) -> bool:
        return self.reason is None

    def as_row(self) -> dict:
        """Flat dict for a pairs manifest."""
        return {**self.transform.as_dict(), "score": self.score, "overlap": self.overlap,
                "method": self.method, "nominal_ratio": self.nominal_ratio,
                "accepted": self.accepted, "reason": self.reason or "", "seconds": self.seconds}


# --------------------------------------------------------------------------------------------
# small geometry helpers (3x3 homogeneous matrices)

def _h(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0.0, 0.0, 1.0]])


def _translate(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _level_matrix(k: int) -> np.ndarray:
    """Level-k pyramid coordinates -> level-0 coordinates."""
    f = float(2**k)
    o = (f - 1.0) / 2.0
    return np.array([[f, 0.0, o], [0.0, f, o], [0.0, 0.0, 1.0]])


def _similarity(centre: tuple[float, float], rel_scale: float, rotation_deg: float) -> np.ndarray:
    """3x3: scale by rel_scale and rotate about ``centre``."""
    a = math.radians(rotation_deg)
    lin = rel_scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = np.asarray(centre, dtype=np.float64)
    return _h(np.column_stack([lin, c - lin @ c]))


def _template_to_view(nominal: float, border: int = 0) -> np.ndarray:
    """3x3: template (level 0, ``border`` pixels cropped off each side) coordinates -> view coordinates."""
    return (np.array([[nominal, 0.0, 0.5 * nominal - 0.5], [0.0, nominal, 0.5 * nominal - 0.5], [0, 0, 1.0]])
            @ _translate(border, border))


def _warp_to_transform(warp: np.ndarray, t2v: np.ndarray, view_shape: tuple[int, int]) -> Transform:
    """Template->low 3x3 (or 2x3) affine -> the nearest similarity as a view->low Transform."""
    view_to_low = _h(warp[:2]) @ np.linalg.inv(t2v)
    a = 0.5 * (view_to_low[0, 0] + view_to_low[1, 1])
    b = 0.5 * (view_to_low[1, 0] - view_to_low[0, 1])
    h, w = view_shape
    cx, cy = view_to_low[:2] @ np.array([(w - 1) / 2.0, (h - 1) / 2.0, 1.0])
    return Transform(float(cx), float(cy), float(1.0 / math.hypot(a, b)), float(math.degrees(math.atan2(b, a))))


def corner_error(estimate: Transform, truth: Transform, view_shape: tuple[int, int]) -> float:
    """RMS distance (low-magnification pixels) between the view's corners under two transforms.

    Combines translation, scale and rotation errors in the unit the accuracy targets use.
    """
    d = estimate.corners(view_shape) - truth.corners(view_shape)
    return float(np.sqrt(np.mean(np.sum(d * d, axis=1))))


# --------------------------------------------------------------------------------------------
# inputs and pyramids

def _as_gray_float(image: np.ndarray, what: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"registration: {what} has shape {image.shape}: expected a 2-D grayscale image "
                         "(convert colour captures to grayscale first)")
    if image.dtype.kind not in "uif":
        raise ValueError(f"registration: {what} dtype {image.dtype}: expected an integer or floating dtype")
    if min(image.shape) < 8:
        raise ValueError(f"registration: {what} shape {image.shape}: expected at least 8 pixels a side")
    out = image.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        raise ValueError(f"registration: {what} contains NaN or infinite values")
    return out


def _halve(image: np.ndarray) -> np.ndarray:
    """Exact 2x2 average (an odd last row/column is dropped)."""
    h, w = image.shape[0] // 2, image.shape[1] // 2
    return image[: 2 * h, : 2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3), dtype=np.float32)


def _pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    pyr = [image]
    for _ in range(levels):
        pyr.append(_halve(pyr[-1]))
    return pyr


def make_template(view: np.ndarray, nominal_ratio: float) -> np.ndarray:
    """The view reduced to the low-magnification scale by the nominal ratio (float32)."""
    view = _as_gray_float(view, "high-magnification view")
    if not nominal_ratio > 0:
        raise ValueError(f"registration: nominal_ratio {nominal_ratio!r}: expected a number > 0")
    shape = (int(view.shape[0] // nominal_ratio), int(view.shape[1] // nominal_ratio))
    if min(shape) < 8:
        raise ValueError(f"registration: view {view.shape} at nominal ratio {nominal_ratio} is only {shape} "
                         "low-magnification pixels: expected at least 8 a side")
    return imresize(view, scale=1.0 / nominal_ratio, output_shape=shape)


def background_sigma(template_shape: tuple[int, int]) -> float:
    """Scale (low-magnification pixels) of the uneven illumination removed before matching."""
    return max(2.0, min(template_shape) / 6.0)


def flatten(image: np.ndarray, sigma: float) -> np.ndarray:
    """``image`` minus its Gaussian-smoothed background (float32): removes uneven illumination.

    The background is smoothed on a grid reduced by a power of two (area averaging) so that the
    cost does not grow with ``sigma``, then enlarged back bilinearly.
    """
    image = np.asarray(image, dtype=np.float32)
    f = 2 ** max(0, int(math.floor(math.log2(max(sigma, 1.0) / 2.0))))
    h, w = image.shape
    small = cv2.resize(image, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA) if f > 1 else image
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma / f, borderType=cv2.BORDER_REFLECT)
    back = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) if f > 1 else small
    return image - back


def auto_levels(template_shape: tuple[int, int], max_levels: int = MAX_LEVELS) -> int:
    """Halvings (<= max_levels) that keep the template at least MIN_COARSE_PX a side."""
    m = min(template_shape)
    return int(max(0, min(max_levels, math.floor(math.log2(max(m, 1) / MIN_COARSE_PX)))))


# --------------------------------------------------------------------------------------------
# NCC scorer (shared by the spiral search and the brute-force baseline)

class _NCC:
    """Zero-mean normalised cross-correlation of one template at chosen top-left positions."""

    def __init__(self, image: np.ndarray, template: np.ndarray):
        self.mh, self.mw = template.shape
        if self.mh > image.shape[0] or self.mw > image.shape[1]:
            raise ValueError(f"template {template.shape} larger than image {image.shape}")
        t = template.astype(np.float64) - template.mean(dtype=np.float64)
        self.t = t.astype(np.float32).ravel()
        self.tnorm = float(np.sqrt(np.sum(t * t)))
        self.n = self.mh * self.mw
        self.windows = sliding_window_view(image, (self.mh, self.mw))
        s, sq = cv2.integral2(image.astype(np.float64), sdepth=cv2.CV_64F)
        self.s, self.sq = s, sq
        self.ny, self.nx = self.windows.shape[:2]
        self.evaluated = 0

    def _box(self, integral: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        return (integral[ys + self.mh, xs + self.mw] - integral[ys, xs + self.mw]
                - integral[ys + self.mh, xs] + integral[ys, xs])

    def __call__(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        ys = np.asarray(ys, dtype=np.int64)
        xs = np.asarray(xs, dtype=np.int64)
        out = np.empty(ys.size, dtype=np.float64)
        step = max(1, _BATCH_ELEMENTS // self.n)
        for i in range(0, ys.size, step):
            y, x = ys[i:i + step], xs[i:i + step]
            num = self.windows[y, x].reshape(y.size, self.n) @ self.t
            s = self._box(self.s, y, x)
            var = self._box(self.sq, y, x) - s * s / self.n
            den = np.sqrt(np.maximum(var, 0.0)) * self.tnorm
            out[i:i + step] = np.where(den > 1e-9, num / np.maximum(den, 1e-9), 0.0)
        self.evaluated += ys.size
        return out


def spiral_order(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """All (y, x) of an ny x nx grid ordered along a square spiral from the centre outwards."""
    ys, xs = np.mgrid[0:ny, 0:nx]
    dy, dx = ys.ravel() - (ny - 1) // 2, xs.ravel() - (nx - 1) // 2
    ring = np.maximum(np.abs(dy), np.abs(dx))
    angle = np.arctan2(dy, dx)
    order = np.lexsort((angle, ring))
    return ys.ravel()[order], xs.ravel()[order]


def _spiral_best(scorer: _NCC, stop_score: float | None) -> tuple[int, int, float]:
    ys, xs = spiral_order(scorer.ny, scorer.nx)
    if stop_score is None:
        scores = scorer(ys, xs)
        i = int(np.argmax(scores))  # first maximum in spiral order: ties go to the centre
        return int(ys[i]), int(xs[i]), float(scores[i])
    best = (-np.inf, 0, 0)
    step = max(64, _BATCH_ELEMENTS // scorer.n)
    for i in range(0, ys.size, step):
        scores = scorer(ys[i:i + step], xs[i:i + step])
        j = int(np.argmax(scores))
        if scores[j] > best[0]:
            best = (float(scores[j]), int(ys[i + j]), int(xs[i + j]))
        if best[0] >= stop_score:
            break
    return best[1], best[2], best[0]


def exhaustive_search(low: np.ndarray, template: np.ndarray) -> tuple[int, int, float]:
    """Brute force: the NCC of ``template`` at every top-left position of ``low`` (full resolution).

    Returns (y, x, score) of the best. The baseline the pyramid search is timed against.
    """
    scorer = _NCC(_as_gray_float(low, "low-magnification image"), _as_gray_float(template, "template"))
    ys, xs = np.mgrid[0:scorer.ny, 0:scorer.nx]
    scores = scorer(ys.ravel(), xs.ravel())
    i = int(np.argmax(scores))
    return int(ys.ravel()[i]), int(xs.ravel()[i]), float(scores[i])


def pyramid_search(low: np.ndarray, template: np.ndarray, levels: int, refine_radius: int = 1,
                   stop_score: float | None = None) -> tuple[int, int, float, int]:
    """The published spiral pyramid search for the best top-left translation of ``template``.

    Returns (y, x, score at level 0, positions evaluated).
    """
    low_pyr, t_pyr = _pyramid(low, levels), _pyramid(template, levels)
    coarse = _NCC(low_pyr[levels], t_pyr[levels])
    y, x, score = _spiral_best(coarse, stop_score)
    evaluated = coarse.evaluated
    offsets = np.arange(-refine_radius, 2 + refine_radius)
    for k in range(levels - 1, -1, -1):
        scorer = _NCC(low_pyr[k], t_pyr[k])
        cy = np.clip(2 * y + offsets, 0, scorer.ny - 1)
        cx = np.clip(2 * x + offsets, 0, scorer.nx - 1)
        gy, gx = np.meshgrid(np.unique(cy), np.unique(cx), indexing="ij")
        scores = scorer(gy.ravel(), gx.ravel())
        i = int(np.argmax(scores))
        y, x, score = int(gy.ravel()[i]), int(gx.ravel()[i]), float(scores[i])
        evaluated += scorer.evaluated
    return y, x, score, evaluated


# --------------------------------------------------------------------------------------------
# NCC grid search (OpenCV)

def _grid(half_range: float, step: float, max_n: int = 9) -> np.ndarray:
    if half_range <= 0:
        return np.zeros(1)
    n = min(max_n, 2 * math.ceil(half_range / step) + 1)
    return np.linspace(-half_range, half_range, max(n, 3))


def _ncc_grid_search(low_k: np.ndarray, tmpl_k: np.ndarray, k: int, scale_tolerance: float,
                     max_rotation_deg: float) -> tuple[np.ndarray, float, dict]:
    """matchTemplate over scales x rotations at level k; returns the template->low level-0 3x3 warp."""
    mh, mw = tmpl_k.shape
    centre = ((mw - 1) / 2.0, (mh - 1) / 2.0)
    half_diag = 0.5 * math.hypot(mh, mw)
    # Grid steps: at most ~0.5 coarse pixel of displacement at the template's corners.
    rotations = _grid(max_rotation_deg, math.degrees(0.5 / half_diag))
    scales = 1.0 + _grid(scale_tolerance, 0.5 / half_diag)
    border = math.ceil(half_diag * (math.sin(math.radians(max_rotation_deg)) + scale_tolerance)) + 1
    if min(mh, mw) - 2 * border < 8:
        border = 0
    best = (-np.inf, None)
    for s in scales:
        for r in rotations:
            # s = true ratio / nominal: a larger true ratio shows the view smaller in the low image
            m = _similarity(centre, 1.0 / s, r)
            warped = cv2.warpAffine(tmpl_k, m[:2], (mw, mh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            crop = warped[border:mh - border, border:mw - border]
            if crop.shape[0] > low_k.shape[0] or crop.shape[1] > low_k.shape[1]:
                continue
            res = cv2.matchTemplate(low_k, crop, cv2.TM_CCOEFF_NORMED)
            _, val, _, loc = cv2.minMaxLoc(res)
            if val > best[0]:
                # template_k -> low_k: warp m, then crop offset (-border), then the match offset
                warp_k = _translate(loc[0] - border, loc[1] - border) @ m
                best = (float(val), warp_k, float(s), float(r))
    if best[1] is None:
        raise ValueError(f"registration: template {tmpl_k.shape} does not fit in image {low_k.shape} at level {k}")
    lk = _level_matrix(k)
    warp0 = lk @ best[1] @ np.linalg.inv(lk)
    return warp0, best[0], {"grid_scales": len(scales), "grid_rotations": len(rotations),
                            "coarse_rel_scale": best[2], "coarse_rotation_deg": best[3]}


# --------------------------------------------------------------------------------------------
# refinement and scoring

def _crop_box(warp: np.ndarray, tshape: tuple[int, int], lshape: tuple[int, int], margin: int):
    h, w = tshape
    pts = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [w - 0.5, h - 0.5, 1], [-0.5, h - 0.5, 1]]) @ warp[:2].T
    x0 = max(0, int(math.floor(pts[:, 0].min())) - margin)
    y0 = max(0, int(math.floor(pts[:, 1].min())) - margin)
    x1 = min(lshape[1], int(math.ceil(pts[:, 0].max())) + margin + 1)
    y1 = min(lshape[0], int(math.ceil(pts[:, 1].max())) + margin + 1)
    return x0, y0, x1, y1


def _ecc_refine(low_pyr: list[np.ndarray], t_pyr: list[np.ndarray], warp0: np.ndarray, start_level: int,
                iterations: int, eps: float) -> tuple[np.ndarray, str | None]:
    """Coarse-to-fine cv2.findTransformECC (affine) of template->low; returns (warp0, failure note)."""
    note = None
    warp = warp0
    for k in range(start_level, -1, -1):
        tmpl, low = t_pyr[k], low_pyr[k]
        if min(tmpl.shape) < 8:
            continue
        lk = _level_matrix(k)
        warp_k = np.linalg.inv(lk) @ warp @ lk
        x0, y0, x1, y1 = _crop_box(warp_k, tmpl.shape, low.shape, margin=4)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return warp, f"footprint left the image at level {k}"
        local = (_translate(-x0, -y0) @ warp_k)[:2].astype(np.float32)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, eps)
        try:
            _, local = cv2.findTransformECC(tmpl, np.ascontiguousarray(low[y0:y1, x0:x1]), local,
                                            cv2.MOTION_AFFINE, criteria, None, 3 if k > 0 else 5)
        except cv2.error as exc:
            note = f"ECC did not converge at level {k}: {str(exc).strip().splitlines()[-1]}"
            continue
        warp_k = _translate(x0, y0) @ _h(local.astype(np.float64))
        warp = lk @ warp_k @ np.linalg.inv(lk)
    return warp, note


def footprint_overlap(transform: Transform, view_shape: tuple[int, int], low_shape: tuple[int, int]) -> float:
    """Fraction of the view's footprint (area) that lies inside the low-magnification image."""
    poly = transform.corners(view_shape).astype(np.float32)
    area = abs(cv2.contourArea(poly))
    h, w = low_shape[:2]
    frame = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]], dtype=np.float32)
    inter, _ = cv2.intersectConvexConvex(poly, frame)
    return float(min(1.0, inter / area)) if area > 0 else 0.0  # float32 geometry: clamp rounding


def _score(low: np.ndarray, template: np.ndarray, warp: np.ndarray) -> float:
    """Pearson correlation of ``template`` warped by ``warp`` (template->low) with ``low`` inside the footprint."""
    x0, y0, x1, y1 = _crop_box(warp, template.shape, low.shape, margin=0)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0
    local = (_translate(-x0, -y0) @ warp)[:2]
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(template, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    mask = cv2.warpAffine(np.ones_like(template), local, size, flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0.5
    # keep clear of the footprint's edge, where interpolation mixes in the border
    mask = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if mask.sum() < 64:
        return 0.0
    a = warped[mask].astype(np.float64)
    b = low[y0:y1, x0:x1][mask].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    den = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b) / den) if den > 0 else 0.0


def _prepare(low: np.ndarray, view: np.ndarray,
             nominal_ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(flattened low, flattened template with its border cropped, template->view 3x3, info)."""
    low = _as_gray_float(low, "low-magnification image")
    template = make_template(view, nominal_ratio)
    sigma = background_sigma(template.shape)
    border = TEMPLATE_BORDER if min(template.shape) >= 8 + 2 * TEMPLATE_BORDER else 0
    template = flatten(template, sigma)[border:template.shape[0] - border, border:template.shape[1] - border]
    info = {"template_shape": template.shape, "background_sigma": sigma, "template_border": border}
    return flatten(low, sigma), np.ascontiguousarray(template), _template_to_view(nominal_ratio, border), info


def rejection_reason(score: float, overlap: float, min_score: float, min_overlap: float) -> str | None:
    """None when a registration may be used, else why not."""
    if not math.isfinite(score) or score < min_score:
        return (f"match score {score:.3f} is below min_score {min_score:.3f}: the high-magnification view was "
                "not found in the low-magnification image (the views do not overlap, or differ too much)")
    if overlap < min_overlap:
        return (f"only {100 * overlap:.1f}% of the view's footprint lies inside the low-magnification image "
                f"(min_overlap {100 * min_overlap:.1f}%)")
    return None


# --------------------------------------------------------------------------------------------
# the entry point

def register(low: np.ndarray, view: np.ndarray, nominal_ratio: float, method: str = "ncc", *,
             scale_tolerance: float = 0.05, max_rotation_deg: float = 2.0, levels: int | None = None,
             refine: bool = True, refine_radius: int = 1, stop_score: float | None = None,
             min_score: float = 0.6, min_overlap: float = 0.98, ecc_iterations: int = 50,
             ecc_eps: float = 1e-4) -> Registration:
    """Find the high-magnification ``view`` inside the low-magnification image ``low``.

    ``nominal_ratio``: view pixels per low-magnification pixel as labelled (e.g. 4 for 40x vs 10x);
    the true ratio is searched within ``scale_tolerance`` (relative) of it by ``ncc`` and refined by
    ECC for both methods, the rotation within +-``max_rotation_deg``. ``levels``: pyramid halvings
    (default: as many as keep the template >= 16 px, at most 4). ``refine=False`` stops after the
    integer-pixel search (the published spiral method as is). The result's ``reason`` is None when
    the score and overlap pass ``min_score`` / ``min_overlap``; otherwise it says why the pair
    must not be used.
    """
    if method not in METHODS:
        raise ValueError(f"registration: method {method!r}: expected one of {', '.join(METHODS)}")
    for name, value, lo in (("scale_tolerance", scale_tolerance, 0.0), ("max_rotation_deg", max_rotation_deg, 0.0),
                            ("refine_radius", refine_radius, 0)):
        if not value >= lo:
            raise ValueError(f"registration: {name} {value!r}: expected a number >= {lo}")
    start = time.perf_counter()
    view_shape = tuple(np.asarray(view).shape[:2])
    low_shape = np.asarray(low).shape
    full = (int(view_shape[0] // nominal_ratio), int(view_shape[1] // nominal_ratio)) if nominal_ratio > 0 else (0, 0)
    if len(low_shape) == 2 and (full[0] > low_shape[0] or full[1] > low_shape[1]):
        reason = (f"the view {view_shape} at nominal ratio {nominal_ratio:g} covers {full} "
                  f"low-magnification pixels, more than the low-magnification image {low_shape}: "
                  "no overlap to register")
        ident = Transform((low_shape[1] - 1) / 2, (low_shape[0] - 1) / 2, float(nominal_ratio), 0.0)
        return Registration(ident, float("nan"), 0.0, method, float(nominal_ratio), view_shape, reason,
                            time.perf_counter() - start, {})
    low_f, template, t2v, info = _prepare(low, view, nominal_ratio)
    if levels is None:
        levels = auto_levels(template.shape)
    if not 0 <= int(levels) <= 8:
        raise ValueError(f"registration: levels {levels!r}: expected 0..8")
    levels = int(levels)
    low_pyr, t_pyr = _pyramid(low_f, levels), _pyramid(template, levels)
    info["levels"] = levels

    if method == "spiral":
        y, x, coarse_score, evaluated = pyramid_search(low_f, template, levels, refine_radius, stop_score)
        warp = _translate(x, y)
        info.update(coarse_score=coarse_score, positions_evaluated=evaluated)
        ecc_start = min(levels, 2)
    else:
        warp, coarse_score, grid_info = _ncc_grid_search(low_pyr[levels], t_pyr[levels], levels,
                                                         scale_tolerance, max_rotation_deg)
        info.update(coarse_score=coarse_score, **grid_info)
        ecc_start = max(levels - 1, 0)

    if refine:
        warp, note = _ecc_refine(low_pyr, t_pyr, warp, ecc_start, ecc_iterations, ecc_eps)
        if note:
            info["refine_note"] = note
    transform = _warp_to_transform(warp, t2v, view_shape)
    score = _score(low_f, template, warp)
    overlap = footprint_overlap(transform, view_shape, low_f.shape)
    reason = rejection_reason(score, overlap, min_score, min_overlap)
    if reason is None and refine:
        rel = transform.scale / nominal_ratio - 1.0
        if abs(rel) > 2 * scale_tolerance + 1e-9 or abs(transform.rotation_deg) > 2 * max_rotation_deg + 1e-9:
            reason = (f"refined ratio {transform.scale:.4f} (nominal {nominal_ratio:g}) or rotation "
                      f"{transform.rotation_deg:.2f} deg is far outside the searched range "
                      f"(+-{100 * scale_tolerance:g}%, +-{max_rotation_deg:g} deg): refinement diverged")
    return Registration(transform, score, overlap, method, float(nominal_ratio), view_shape, reason,
                        time.perf_counter() - start, info)


# --------------------------------------------------------------------------------------------
# cutting the registered pair

def pair_box(registration: Registration, low_shape: tuple[int, int], margin: float = 1.0) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), exclusive ends: the largest centred axis-aligned low-magnification pixel box
    inside the view's footprint (same aspect ratio), ``margin`` low-magnification pixels clear of its edge."""
    t = registration.transform
    h, w = registration.view_shape
    a, b = w / (2.0 * t.scale), h / (2.0 * t.scale)
    th = math.radians(abs(t.rotation_deg))
    c, s = math.cos(th), math.sin(th)
    k = min(a / (a * c + b * s), b / (a * s + b * c))
    p, q = k * a - margin, k * b - margin
    x0 = max(0, math.ceil(t.cx - p + 0.5))
    x1 = min(low_shape[1], math.floor(t.cx + p - 0.5) + 1)
    y0 = max(0, math.ceil(t.cy - q + 0.5))
    y1 = min(low_shape[0], math.floor(t.cy + q - 0.5) + 1)
    return x0, y0, x1, y1


def cut_pair(low: np.ndarray, view: np.ndarray, registration: Registration, scale: int | None = None,
             margin: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The registered pair: (LR region of ``low``, the view resampled to exactly ``scale`` x that region).

    ``scale`` (integer, default the nominal ratio rounded) is the SR factor of the pair; the view is
    resampled (bicubic) on the grid of the LR box refined ``scale`` times, undoing the measured
    rotation and the difference between the true ratio and ``scale``. Raises ValueError for a
    rejected registration: a pair below the score threshold is never silently used.
    """
    if not registration.accepted:
        raise ValueError(f"registration: refusing to cut a rejected pair: {registration.reason}")
    low = np.asarray(low)
    view = np.asarray(view)
    if low.ndim != 2 or view.ndim != 2:
        raise ValueError(f"registration: cut_pair expects 2-D grayscale images, got {low.shape} and {view.shape}")
    if tuple(view.shape) != tuple(registration.view_shape):
        raise ValueError(f"registration: view shape {view.shape} differs from the registered {registration.view_shape}")
    if scale is None:
        scale = int(round(registration.nominal_ratio))
    if int(scale) != scale or scale < 1:
        raise ValueError(f"registration: scale {scale!r}: expected an integer >= 1")
    scale = int(scale)
    x0, y0, x1, y1 = pair_box(registration, low.shape, margin)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ValueError(f"registration: the footprint {registration.transform} holds no whole "
                         f"low-magnification pixel inside {low.shape}")
    lr = low[y0:y1, x0:x1].copy()
    # HR pixel (j, i) sits at low coordinate x0 + (j + 0.5) / scale - 0.5 (imresize's mapping)
    hr_to_low = np.array([[1.0 / scale, 0.0, x0 + 0.5 / scale - 0.5], [0.0, 1.0 / scale, y0 + 0.5 / scale - 0.5],
                          [0.0, 0.0, 1.0]])
    hr_to_view = _h(registration.transform.inverse_matrix(registration.view_shape)) @ hr_to_low
    src = view.astype(np.float32, copy=False)
    hr = cv2.warpAffine(src, hr_to_view[:2], ((x1 - x0) * scale, (y1 - y0) * scale),
                        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    if view.dtype.kind in "ui":
        info = np.iinfo(view.dtype)
        hr = np.clip(np.rint(hr), info.min, info.max)
    return lr, hr.astype(view.dtype)
