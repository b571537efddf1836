"""VGG-style GAN discriminator that works at any input size (global average pooling head)."""

from __future__ import annotations

import torch
from torch import nn


class VGGStyleDiscriminator(nn.Module):
    """Stages of conv3 (stride 1) - [BN] - LeakyReLU(0.2), conv4 (stride 2) - [BN] - LeakyReLU,
    widths ``num_feat * 2**i`` capped at ``8 * num_feat``; the first conv has no BN. Then global
    average pooling and an MLP (width -> 100 -> 1): one logit per image, shape (N, 1).

    Any input of at least ``2**num_stages`` pixels per side works (no linear layer sized by the
    spatial dimensions). ``use_bn=False`` drops BatchNorm (e.g. for gradient-penalty losses).
    """

    def __init__(self, num_feat: int = 64, num_stages: int = 4, num_in_ch: int = 1, use_bn: bool = True, hidden: int = 100):
        super().__init__()
        if num_stages < 1:
            raise ValueError("VGGStyleDiscriminator: num_stages must be >= 1")
        self.num_stages = num_stages

        def norm(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if use_bn else nn.Identity()

        layers: list[nn.Module] = []
        cin = num_in_ch
        for i in range(num_stages):
            cout = num_feat * min(2**i, 8)
            layers += [nn.Conv2d(cin, cout, 3, 1, 1, bias=not (use_bn and i > 0))]
            if i > 0:
                layers.append(norm(cout))
            layers += [
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(cout, cout, 4, 2, 1, bias=not use_bn),
                norm(cout),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(cin, hidden), nn.LeakyReLU(0.2, inplace=True), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        min_side = 2**self.num_stages
        if min(x.shape[-2:]) < min_side:
            raise ValueError(f"VGGStyleDiscriminator: input {tuple(x.shape[-2:])} is smaller than {min_side} px per side")
        return self.head(self.features(x).mean((2, 3)))
