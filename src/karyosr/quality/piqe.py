"""PIQE: Perception based Image Quality Evaluator (no-reference; 0-100, lower is better).

Implemented from Venkatanath N., Praneeth D., Maruthi Chandrasekhar Bh., Channappayya S. S.
and Medasani S. S., "Blind image quality evaluation using perception based features",
NCC 2015, written from the published description (no code copied). Where the paper leaves a
detail open, the behaviour of the widely used MathWorks ``piqe`` (which follows the paper) was
taken as the tie-breaker; every such choice is listed below.

API
---
``piqe(image) -> float``
    The score in [0, 100]; never NaN.
``piqe_details(image) -> PiqeResult``
    The score plus block counts (total, spatially active, with noticeable distortion, with
    noise), for diagnostics.

Algorithm
---------
1. Input: a 2-D grey image, uint8, uint16 (scaled by 255/65535), bool (0/255), or an
   integer/float array taken as already on the 0-255 scale (see ``karyosr.quality.niqe.to_gray255``;
   (H, W, 1) and grey-as-colour (H, W, 3|4) arrays are accepted). The image is cropped
   (top-left kept) to a multiple of 16 in each dimension.
2. MSCN coefficients of the cropped image: 7x7 Gaussian window with sigma 7/6, replicated
   borders, C = 1 (``karyosr.quality.niqe.mscn``).
3. Non-overlapping 16x16 blocks. A block is *spatially active* when the sample variance
   (N - 1) of its MSCN coefficients, v_k, exceeds T = 0.1. Only active blocks are analysed.
4. Noticeable-distortion criterion: each of the 4 block edges (top and bottom row, left and
   right column, 16 values each) is split into the 11 overlapping segments of 6 consecutive
   pixels (stride 1); the block has noticeable distortion when *any* segment on any edge has
   sample standard deviation < 0.1 (edge threshold) -- a flat stretch on the border of an
   otherwise active block, which is what blocking and blur leave behind.
5. Noise criterion: centre = the two central columns (columns 8 and 9 of 16), surround = the
   other 14 columns; sigma_cs = std(centre) / std(surround) (sample std), sigma_blk = sqrt(v_k),
   beta = |sigma_blk - sigma_cs| / max(sigma_blk, sigma_cs); the block is noisy when
   sigma_blk > 2 beta.
6. Block distortion D_k = [noticeable] (1 - v_k) + [noisy] v_k, i.e. 1 - v_k for noticeable
   distortion only, v_k for noise only and 1 for both.
7. PIQE = (sum_k D_k + C1) / (N_active + C1) * 100 with C1 = 1, clipped to [0, 100].

Choices where the paper is ambiguous (or where this implementation deliberately differs)
---------------------------------------------------------------------------------------
- Block score (step 6): the paper can be read as "1 for noticeable distortion, v_k for
  noise"; the formula used here -- (1 - v_k) for noticeable distortion, v_k for noise, their
  sum (= 1) for both -- is the one MathWorks' ``piqe`` and the Python ports derived from it
  use. It charges an active block with noticeable artefacts less the more texture (MSCN
  variance) it still has.
- Edge segments (step 4): "segments of 6 pixels" is read as all 11 overlapping windows per
  16-pixel edge (stride 1), standard deviations with N - 1, as MathWorks does.
- Centre/surround (step 5): the surround is the 14 non-central columns. (MathWorks deletes
  column 8 and then what has become column 9, i.e. original column 10, so its surround keeps
  column 9; that looks like an indexing slip and is not reproduced.) If the surround has zero
  spread, sigma_cs is taken as 0 (MathWorks does this for 0/0 only).
- Noise test (step 5): sigma_blk > 2 beta, as in the paper's criterion and MathWorks (not a
  fixed threshold on beta).
- Cropping (step 1): the image is cropped to a multiple of 16 before the MSCN step (project
  decision); MathWorks instead pads (replicate, bottom/right). Partial blocks are
  never scored either way (padded ones are almost never active).
- Rounding: MathWorks rounds the 0-255 image to integers; here float input is used as is and
  uint16 is scaled without rounding.
- Range (step 7): the definition does not bound v_k by 1 (|MSCN| can reach about 2.9 with
  this window); with v_k > 1 a noisy block would contribute more than 1 and a noticeable-only
  block less than 0, so the raw value is clipped to [0, 100]. (No test image reached v_k > 1.)
- Flat image vs. no active block: a *flat* image (the cropped image is constant, so there is
  no structure at all and nothing distorted is visible) returns 0.0 (project convention).
  An image that has content but no spatially active block -- in practice a heavily blurred
  one: a synthetic chromosome montage with sensor-like noise loses its last
  active block at a Gaussian blur sigma of about 1.75 px -- gets the paper's formula with
  N_active = 0, (0 + C1) / (0 + C1) * 100 = 100 (MathWorks returns 100 for every image
  without active blocks). Returning 0.0 there as well would rank the blurriest images (e.g.
  bicubic-upscaled low-resolution inputs) as perfect and break the score's monotonicity in
  blur.
- Minimum size: an image smaller than 16x16 in either dimension raises ValueError naming its
  size and the minimum.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from karyosr.quality.niqe import blocks, mscn, to_gray255

__all__ = ["BLOCK_SIZE", "PiqeResult", "piqe", "piqe_details"]

BLOCK_SIZE = 16
ACTIVITY_THRESHOLD = 0.1  # T: MSCN block variance above which a block is spatially active
EDGE_THRESHOLD = 0.1  # a 6-pixel edge segment with std below this is a noticeable artefact
SEGMENT_LENGTH = 6
C1 = 1.0


class PiqeResult(NamedTuple):
    score: float
    n_blocks: int
    n_active: int
    n_noticeable: int
    n_noise: int


def _noticeable(b: np.ndarray) -> np.ndarray:
    """Noticeable-distortion flag per block of (n, 16, 16) MSCN blocks."""
    edges = np.stack([b[:, 0, :], b[:, -1, :], b[:, :, 0], b[:, :, -1]], axis=1)  # (n, 4, 16)
    segments = sliding_window_view(edges, SEGMENT_LENGTH, axis=-1)  # (n, 4, 11, 6)
    seg_std = segments.std(axis=-1, ddof=1)
    return (seg_std < EDGE_THRESHOLD).any(axis=(1, 2))


def _noisy(b: np.ndarray, block_var: np.ndarray) -> np.ndarray:
    """Noise flag per block (centre-surround criterion)."""
    n, s = b.shape[0], b.shape[2]
    c0 = s // 2 - 1  # columns 7 and 8 (0-based) of 16
    centre = b[:, :, c0 : c0 + 2].reshape(n, -1)
    surround = np.concatenate([b[:, :, :c0], b[:, :, c0 + 2 :]], axis=2).reshape(n, -1)
    std_c = centre.std(axis=1, ddof=1)
    std_s = surround.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cs = np.where(std_s > 0, std_c / np.where(std_s > 0, std_s, 1.0), 0.0)
    sigma = np.sqrt(block_var)
    denom = np.maximum(sigma, cs)  # > 0: only active blocks (sigma^2 > 0.1) come here
    beta = np.abs(sigma - cs) / denom
    return sigma > 2.0 * beta


def piqe_details(image) -> PiqeResult:
    """PIQE score and block counts of a grey image (see the module docstring)."""
    img = to_gray255(image)
    h, w = img.shape
    if h < BLOCK_SIZE or w < BLOCK_SIZE:
        raise ValueError(
            f"image of size {h}x{w} is too small for PIQE: the minimum is {BLOCK_SIZE}x{BLOCK_SIZE} "
            f"(one {BLOCK_SIZE}x{BLOCK_SIZE} block)"
        )
    img = img[: (h // BLOCK_SIZE) * BLOCK_SIZE, : (w // BLOCK_SIZE) * BLOCK_SIZE]
    coeffs, _ = mscn(img)
    b = blocks(coeffs, BLOCK_SIZE)
    block_var = b.reshape(b.shape[0], -1).var(axis=1, ddof=1)
    active = block_var > ACTIVITY_THRESHOLD
    n_active = int(active.sum())
    if n_active == 0:
        # Flat (constant) image: nothing is visible, nothing distorted -> 0. Content without
        # any active block (heavy blur) -> the formula with N_active = 0 -> 100.
        flat = bool(np.ptp(img) == 0)
        return PiqeResult(0.0 if flat else 100.0, b.shape[0], 0, 0, 0)
    ba, va = b[active], block_var[active]
    noticeable = _noticeable(ba)
    noisy = _noisy(ba, va)
    distortion = noticeable * (1.0 - va) + noisy * va
    score = (distortion.sum() + C1) / (n_active + C1) * 100.0
    score = float(np.clip(score, 0.0, 100.0))
    return PiqeResult(score, b.shape[0], n_active, int(noticeable.sum()), int(noisy.sum()))


def piqe(image) -> float:
    """PIQE score in [0, 100] of a grey image; lower is better.

    0.0 for a flat (constant) image; 100.0 for an image with content but no spatially active
    block (see the module docstring).
    """
    return piqe_details(image).score
