"""MATLAB-compatible ``imresize(image, scale, 'bicubic')``: the super-resolution literature's bicubic.

Why: the "bicubic" low-resolution images of the SR literature (SRCNN, SRGAN, EDSR, ESRGAN, the
BasicSR benchmark sets and their result tables) are made by MATLAB's ``imresize(img, 1/scale,
'bicubic')``. OpenCV's ``INTER_CUBIC`` is a different kernel (a = -0.75) and does not widen it
when downscaling, so it aliases: detail above the LR Nyquist frequency folds back into the LR
image instead of being filtered out, and models trained on such pairs learn a different inverse
problem than the one the published numbers describe.

Algorithm (MATLAB Image Processing Toolbox ``imresize.m``, its ``contributions()`` and
``cubic()`` subfunctions; written here from that description, no code copied):

* kernel: Keys' cubic convolution with a = -0.5,
  ``k(x) = 1.5|x|^3 - 2.5|x|^2 + 1`` for |x| <= 1, ``-0.5|x|^3 + 2.5|x|^2 - 4|x| + 2`` for
  1 < |x| <= 2, 0 beyond; 4 taps wide.
* coordinate mapping (1-based): output sample x sits at input coordinate
  ``u = x / scale + 0.5 * (1 - 1 / scale)``, i.e. pixel centres stay aligned.
* antialiasing: when downscaling (scale < 1) the kernel is stretched by 1/scale, so it is
  ``4 / scale`` taps wide with weights ``scale * k(scale * d)``; upscaling uses k as is.
* the weights of every output sample are normalised to sum to 1.
* boundary: input indices outside 1..n are mirrored with edge duplication
  (..., 2, 1 | 1, 2, ..., n | n, n-1, ...), MATLAB's ``symmetric`` padding.
* separable: one pass per axis, the axis with the smaller scale first (rows first on a tie).
  MATLAB keeps the input's class between the passes, so integer images are rounded (half away
  from zero) and saturated after each pass; floating images are not.

Each axis's pass is a dense (out_size, in_size) weight matrix applied as a matrix product, so a
batch of same-size images is two BLAS calls. The matrices are cached per (in_size, out_size,
scale): the workflow resizes thousands of crops of one size.
"""

from __future__ import annotations

import functools
import math

import numpy as np

KERNEL_WIDTH = 4.0  # taps of the unstretched cubic kernel


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


@functools.lru_cache(maxsize=64)
def weight_matrix(in_size: int, out_size: int, scale: float) -> np.ndarray:
    """(out_size, in_size) float64 matrix M with ``resized = M @ column`` along one axis (read-only)."""
    antialias = scale < 1
    width = KERNEL_WIDTH / scale if antialias else KERNEL_WIDTH
    x = np.arange(1, out_size + 1, dtype=np.float64)  # MATLAB's 1-based output coordinates
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2  # MATLAB's P: enough taps for any sub-pixel offset of u
    indices = left[:, None] + np.arange(taps)
    distance = u[:, None] - indices
    weights = scale * cubic(scale * distance) if antialias else cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # symmetric boundary: period 2n, the second half mirrored; 0-based from here on
    period = (indices.astype(np.int64) - 1) % (2 * in_size)
    source = np.where(period < in_size, period, 2 * in_size - 1 - period)
    matrix = np.zeros((out_size, in_size))
    # a mirrored tap can land on an input another tap of the same output already uses
    np.add.at(matrix, (np.repeat(np.arange(out_size), taps), source.ravel()), weights.ravel())
    matrix.flags.writeable = False
    return matrix


@functools.lru_cache(maxsize=64)
def _weight_matrix_as(in_size: int, out_size: int, scale: float, dtype: str) -> np.ndarray:
    matrix = weight_matrix(in_size, out_size, scale).astype(dtype)
    matrix.flags.writeable = False
    return matrix


def _round_and_saturate(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """MATLAB's cast of doubles to an integer class: round half away from zero, clip to range."""
    limits = np.iinfo(dtype)
    return np.clip(np.trunc(values + np.copysign(0.5, values)), limits.min, limits.max)


def imresize(image: np.ndarray, scale: float | None = None,
             output_shape: tuple[int, int] | None = None) -> np.ndarray:
    """MATLAB ``imresize(image, scale or output_shape, 'bicubic')`` of (H, W) or batched (N, H, W).

    ``scale`` > 1 enlarges, < 1 reduces (antialiased); the output is ceil(scale * size) as in
    MATLAB. ``output_shape`` (rows, cols) alone sets the size, and each axis's scale is then
    out / in, as in MATLAB. Given both, ``scale`` sets the coordinate mapping and
    ``output_shape`` how many samples are taken from the top-left, e.g. ``scale=1/4,
    output_shape=(H // 4, W // 4)`` for an H not divisible by 4: every output pixel still
    covers exactly 4 x 4 input pixels.

    Integer images come back in their dtype, rounded and saturated as MATLAB does (after each
    axis's pass); float32 is computed in float32, other floats in float64, and returned in
    their own dtype, unclipped (the cubic kernel overshoots at edges).
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"imresize: image shape {image.shape}: expected (H, W) or (N, H, W)")
    if image.dtype.kind not in "uif":
        raise ValueError(f"imresize: image dtype {image.dtype}: expected an integer or floating dtype")
    in_shape = image.shape[-2:]
    if min(in_shape) < 1:
        raise ValueError(f"imresize: image shape {image.shape}: expected at least one row and column")
    if scale is None and output_shape is None:
        raise ValueError("imresize: give scale or output_shape (or both)")
    if scale is not None and not scale > 0:
        raise ValueError(f"imresize: scale {scale!r}: expected a number > 0")
    if output_shape is None:
        output_shape = tuple(math.ceil(scale * n) for n in in_shape)
    output_shape = tuple(int(n) for n in output_shape)
    if len(output_shape) != 2 or min(output_shape) < 1:
        raise ValueError(f"imresize: output_shape {output_shape}: expected (rows, cols), both >= 1")
    scales = [float(scale) if scale is not None else out / n for out, n in zip(output_shape, in_shape)]

    integer = image.dtype.kind in "ui"
    work_dtype = np.dtype(np.float32) if image.dtype == np.float32 else np.dtype(np.float64)
    out = image.astype(work_dtype)
    for axis in np.argsort(scales, kind="stable"):  # MATLAB: most-reduced axis first, rows on a tie
        matrix = _weight_matrix_as(in_shape[axis], output_shape[axis], scales[axis], work_dtype.name)
        out = np.matmul(matrix, out) if axis == 0 else out @ matrix.T
        if integer:
            out = _round_and_saturate(out, image.dtype)
    return out.astype(image.dtype)
