"""Training-time augmentation of classifier batches: rotations, flips, small translations and zooms."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(batch: torch.Tensor, rotation_step: float, flips: bool, translate: float, zoom: float = 0.0) -> torch.Tensor:
    """Random rotations by multiples of ``rotation_step`` degrees (SRAS-net: 24 x 15°), flips,
    translations by whole pixels, up to ``translate`` times the side, and zooms by a factor drawn
    log-uniformly from [1 / (1 + zoom), 1 + zoom], in one grid_sample call for the whole batch.
    Zooms stand in for what differs between cells: chromosomes of one cell are condensed and imaged
    alike, so a test cell whose chromosomes are all shorter or longer than the training cells' is
    unlike any training image without them. Without rotations and zooms every output pixel is an
    input pixel: a sub-pixel shift would blend neighbours, a random blur that training images get
    and test images never do. Uncovered borders take the nearest edge pixel, which in a padded crop
    is background."""
    n, _, height, width = batch.shape
    steps = max(1, round(360 / rotation_step)) if rotation_step else 1
    angle = torch.randint(0, steps, (n,)).float() * (2 * math.pi / steps)
    # The grid maps output to input coordinates, so shrinking it enlarges the content.
    magnify = torch.exp((torch.rand(n) * 2 - 1) * math.log1p(zoom)) if zoom else torch.ones(n)
    cos, sin = torch.cos(angle) / magnify, torch.sin(angle) / magnify
    flip = torch.where(torch.rand(n) < 0.5, -1.0, 1.0) if flips else torch.ones(n)
    # grid_sample's coordinates span [-1, 1] over the side: one pixel is 2 / side.
    side = torch.tensor([width, height], dtype=torch.float32)
    reach = torch.floor(translate * side)
    shift = torch.round((torch.rand(n, 2) * 2 - 1) * reach) * 2 / side
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1).to(batch.device, batch.dtype)
    grid = F.affine_grid(theta, batch.shape, align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
