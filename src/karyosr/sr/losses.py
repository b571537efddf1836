"""Losses for super-resolution training: pixel, perceptual and adversarial."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PIXEL_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


class PerceptualLoss(nn.Module):
    """L1 distance between feature maps of a frozen network (VGG19 or the pipeline's own CNN)."""

    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features.eval().requires_grad_(False)

    def train(self, mode: bool = True):
        # The feature network stays in eval mode whatever the trainer does.
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(self.features(output), self.features(target))


def generator_adversarial_loss(kind: str, fake_logits: torch.Tensor, real_logits: torch.Tensor | None) -> torch.Tensor:
    """'vanilla' (SRGAN): fool D. 'ragan' (ESRGAN): relativistic average, both terms."""
    if kind == "vanilla":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    real_rel = real_logits - fake_logits.mean()
    fake_rel = fake_logits - real_logits.mean()
    return 0.5 * (F.binary_cross_entropy_with_logits(real_rel, torch.zeros_like(real_rel))
                  + F.binary_cross_entropy_with_logits(fake_rel, torch.ones_like(fake_rel)))


def discriminator_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    if kind == "vanilla":
        return 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                      + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    real_rel = real_logits - fake_logits.mean()
    fake_rel = fake_logits - real_logits.mean()
    return 0.5 * (F.binary_cross_entropy_with_logits(real_rel, torch.ones_like(real_rel))
                  + F.binary_cross_entropy_with_logits(fake_rel, torch.zeros_like(fake_rel)))
