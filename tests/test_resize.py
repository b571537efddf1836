"""Tests for karyosr.resize: MATLAB imresize(..., 'bicubic') against values derived by hand.

Hand derivations use MATLAB's 1-based mapping u = x / scale + 0.5 (1 - 1 / scale), the cubic
k(t) = 1.5|t|^3 - 2.5|t|^2 + 1 (|t| <= 1), -0.5|t|^3 + 2.5|t|^2 - 4|t| + 2 (1 < |t| <= 2),
stretched to scale * k(scale * d) when scale < 1, and mirrored indices
(0 -> 1, -1 -> 2, n + 1 -> n, ...). Values needed: k(0.25) = 111/128, k(0.75) = 29/128,
k(1.25) = -9/128, k(1.75) = -3/128.
"""

from __future__ import annotations

import numpy as np
import pytest

from karyosr.resize import imresize, weight_matrix


def test_downscale_by_2_weights_by_hand():
    # n = 4 -> 2, scale 1/2: kernel 8 wide, u(1) = 1.5, taps at distances +-0.5, +-1.5, +-2.5,
    # +-3.5 weigh k(0.25)/2, k(0.75)/2, k(1.25)/2, k(1.75)/2 (sum already 1). Taps -2, -1, 0
    # mirror to 3, 2, 1 and tap 5 to 4, so output 1 = (111 + 29) x1 + (111 - 9) x2 + (29 - 3) x3
    # + (-9 - 3) x4, all over 256.
    expected = np.array([[70, 51, 13, -6], [-6, 13, 51, 70]]) / 128
    np.testing.assert_array_equal(weight_matrix(4, 2, 0.5), expected)


def test_upscale_by_2_weights_by_hand_with_mirrored_boundary():
    # n = 3 -> 6, scale 2: no stretching. u(1) = 0.75: taps -1, 0, 1, 2 at distances 1.75, 0.75,
    # -0.25, -1.25; -1 mirrors to 2 and 0 to 1: x1 (29 + 111) / 128, x2 (-3 - 9) / 128.
    # u(2) = 1.25: taps 0 (-> 1), 1, 2, 3 at 1.25, 0.25, -0.75, -1.75.
    m = weight_matrix(3, 6, 2.0)
    np.testing.assert_array_equal(m[0], np.array([140, -12, 0]) / 128)
    np.testing.assert_array_equal(m[1], np.array([-9 + 111, 29, -3]) / 128)
    np.testing.assert_array_equal(m[::-1, ::-1], m)  # the mapping is symmetric about the centre


def test_x4_downscale_interior_row_by_hand():
    # scale 1/4: kernel 16 wide, weights k(d / 4) / 4 at d = +-0.5 .. +-7.5, which sum to 1
    # unnormalised (16 samples of k at spacing 1/4). Output i (0-based) sits at input 4i + 1.5:
    # taps 4i - 6 .. 4i + 9. k(0.125) = 7896/8192 etc.; in units of 1/8192:
    half = np.array([1974, 1490, 798, 186, -98, -150, -90, -14])
    row = np.concatenate([half[::-1], half]) / 8192
    m = weight_matrix(96, 24, 0.25)
    for i in (2, 11, 21):
        expected = np.zeros(96)
        expected[4 * i - 6: 4 * i + 10] = row
        np.testing.assert_allclose(m[i], expected, rtol=0, atol=1e-16)
    # output 0 at 1.5: taps -6 .. -1 mirror onto 5 .. 0 and add to the weights already there
    np.testing.assert_allclose(m[0, :10], (row[6:] + np.concatenate([row[:6][::-1], np.zeros(4)]))[:10],
                               rtol=0, atol=1e-16)


def _half_by_eight_taps(a: np.ndarray) -> np.ndarray:
    """imresize(a, 0.5) derived separately (once karyosr.quality.niqe's own copy): output i sits at input
    2i + 0.5 (0-based), so its 8 taps 2i-3 .. 2i+4 lie at distances 3.5 .. -3.5 and weigh
    k(d / 2) / 2; the borders mirror with edge duplication, 4 samples deep."""
    d = np.abs(np.arange(3.5, -4.0, -1.0)) / 2
    taps = np.where(d <= 1, 1.5 * d**3 - 2.5 * d**2 + 1, np.where(d <= 2, -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2, 0.0))
    taps /= taps.sum()

    def rows(x):
        n_out = (x.shape[0] + 1) // 2
        padded = np.pad(x, [(4, 4), (0, 0)], mode="symmetric")
        return sum(w * padded[1 + t: 2 + t + 2 * (n_out - 1): 2] for t, w in enumerate(taps))

    return rows(rows(a).T).T


def test_matches_a_separate_half_scale_derivation():
    image = np.random.default_rng(0).random((37, 50)) * 255
    out = imresize(image, 0.5)
    assert out.shape == (19, 25)
    np.testing.assert_allclose(out, _half_by_eight_taps(image), rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.7, 1.5, 2, 4])
def test_constant_image_stays_constant(dtype, scale):
    image = np.full((30, 22), 173, dtype)
    out = imresize(image, scale)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, 173, rtol=0, atol=1e-4 if dtype == np.float32 else 1e-10)


def test_output_sizes():
    image = np.zeros((50, 37))
    assert imresize(image, 0.25).shape == (13, 10)  # MATLAB: ceil(scale * size)
    assert imresize(image, 1.5).shape == (75, 56)
    assert imresize(image, 4).shape == (200, 148)
    assert imresize(image, output_shape=(20, 30)).shape == (20, 30)
    assert imresize(image, 0.25, output_shape=(12, 9)).shape == (12, 9)


def test_output_shape_alone_sets_each_axis_scale():
    image = np.random.default_rng(1).random((96, 96))
    out = imresize(image, output_shape=(24, 12))
    expected = weight_matrix(96, 24, 0.25) @ image @ weight_matrix(96, 12, 0.125).T
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_scale_with_output_shape_keeps_the_mapping_of_scale():
    image = np.random.default_rng(2).random((50, 50))
    np.testing.assert_array_equal(imresize(image, 0.25, output_shape=(12, 12)), imresize(image, 0.25)[:12, :12])


def test_uint8_rounds_half_away_from_zero_and_saturates():
    # rows 4 -> 2 with the hand weights (70, 51, 13, -6) / 128; the single column is unchanged
    def column(*values):
        return np.array(values, np.uint8)[:, None]

    # 13 x 64 / 128 = 6.5 -> 7 and 51 x 64 / 128 = 25.5 -> 26 (np.rint would give 6 and 26)
    np.testing.assert_array_equal(imresize(column(0, 0, 64, 0), output_shape=(2, 1)), column(7, 26))
    # -6 x 255 / 128 = -11.95 -> 0; 70 x 255 / 128 = 139.45 -> 139
    np.testing.assert_array_equal(imresize(column(0, 0, 0, 255), output_shape=(2, 1)), column(0, 139))
    # 134 x 255 / 128 = 266.95 -> 255; 58 x 255 / 128 = 115.55 -> 116
    np.testing.assert_array_equal(imresize(column(255, 255, 255, 0), output_shape=(2, 1)), column(255, 116))
    wide = np.array([[0], [0], [64064], [0]], np.uint16)  # 13 x 64064 / 128 = 6506.5
    np.testing.assert_array_equal(imresize(wide, output_shape=(2, 1)), np.array([[6507], [25526]], np.uint16))


def test_uint8_is_rounded_after_each_pass_as_in_matlab():
    # MATLAB keeps uint8 between the row and column passes. Rows first (equal scales):
    # row outputs [6.5, 6.5, 0, 0] -> [7, 7, 0, 0] and [25.5, 25.5, 0, 0] -> [26, 26, 0, 0];
    # columns: (70 + 51) x 7 / 128 = 6.62 -> 7, 7 x 7 / 128 -> 0, 121 x 26 / 128 = 24.58 -> 25,
    # 7 x 26 / 128 = 1.42 -> 1. Rounding only at the end would give 6 and 24 instead of 7 and 25.
    image = np.zeros((4, 4), np.uint8)
    image[2, :2] = 64
    np.testing.assert_array_equal(imresize(image, 0.5), [[7, 0], [25, 1]])
    assert np.rint(imresize(image.astype(float), 0.5)).tolist() == [[6, 0], [24, 1]]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("resize", [{"scale": 0.25}, {"scale": 3}, {"output_shape": (17, 9)}])
def test_batched_equals_per_image(dtype, resize):
    rng = np.random.default_rng(3)
    batch = (rng.random((5, 30, 22)) * (255 if dtype == np.uint8 else 60000)).astype(dtype)
    out = imresize(batch, **resize)
    assert out.dtype == dtype and len(out) == 5
    for image, resized in zip(batch, out):
        np.testing.assert_array_equal(resized, imresize(image, **resize))


def test_upscale_by_4_reproduces_a_linear_ramp_in_the_interior():
    # a = -0.5 interpolates linear functions exactly; only taps mirrored at the borders differ.
    rows, cols = np.mgrid[0:12, 0:15]
    plane = 3.0 + 2.5 * rows - 1.25 * cols
    out = imresize(plane, 4)
    r, c = np.mgrid[0:48, 0:60]
    expected = 3.0 + 2.5 * ((r + 0.5) / 4 - 0.5) - 1.25 * ((c + 0.5) / 4 - 0.5)  # 0-based mapping
    interior = (slice(8, -8), slice(8, -8))
    np.testing.assert_allclose(out[interior], expected[interior], rtol=0, atol=1e-12)
    assert np.abs(out - expected).max() > 0.1  # at the borders the mirror does matter


def test_x4_downscale_removes_detail_finer_than_the_lr_grid():
    stripes = 100 * np.sin(2 * np.pi * 0.2 * np.arange(96))  # above the LR Nyquist limit 0.125
    out = imresize(np.tile(stripes, (96, 1)), 0.25)
    assert np.abs(out[:, 3:-3]).max() < 0.2 * 100


def test_weight_matrices_are_cached_and_read_only():
    assert weight_matrix(96, 24, 0.25) is weight_matrix(96, 24, 0.25)
    with pytest.raises(ValueError):
        weight_matrix(96, 24, 0.25)[0, 0] = 1.0


@pytest.mark.parametrize("image, resize, message", [
    (np.zeros((2, 3, 4, 5)), {"scale": 2}, r"shape \(2, 3, 4, 5\): expected \(H, W\) or \(N, H, W\)"),
    (np.zeros((4, 4), bool), {"scale": 2}, "dtype bool: expected an integer or floating dtype"),
    (np.zeros((0, 4)), {"scale": 2}, "at least one row and column"),
    (np.zeros((4, 4)), {}, "give scale or output_shape"),
    (np.zeros((4, 4)), {"scale": 0}, "scale 0: expected a number > 0"),
    (np.zeros((4, 4)), {"output_shape": (2, 0)}, r"output_shape \(2, 0\): expected \(rows, cols\), both >= 1"),
])
def test_bad_arguments_are_named(image, resize, message):
    with pytest.raises(ValueError, match=message):
        imresize(image, **resize)
