"""Classification helpers: input keys, augmentation, Super-networks (statistics: test_class_metrics.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from karyosr import classify


def test_parse_input_keys():
    assert classify.parse_input("hr") == {"kind": "hr"}
    assert classify.parse_input("lr:x4_bicubic") == {"kind": "lr", "profile": "x4_bicubic"}
    assert classify.parse_input("sr:srresnet:x4") == {"kind": "sr", "model": "srresnet", "profile": "x4"}
    assert classify.parse_input("super:srcnn:x4") == {"kind": "super", "arch": "srcnn", "profile": "x4"}
    with pytest.raises(ValueError, match="expected hr"):
        classify.parse_input("sr:x4")
    assert classify.input_slug("sr:srresnet:x4") == "sr-srresnet-x4"


def test_augment_keeps_shape_and_rotates_by_the_step():
    torch.manual_seed(0)
    batch = torch.zeros(64, 1, 32, 32)
    batch[:, :, 14:18, 4:28] = 1.0  # a horizontal bar
    out = classify.augment(batch, rotation_step=90, flips=False, translate=0.0)
    assert out.shape == batch.shape
    vertical = (out[:, 0, 4:28, 14:18].mean((1, 2)) > 0.9)
    horizontal = (out[:, 0, 14:18, 4:28].mean((1, 2)) > 0.9)
    assert (vertical | horizontal).all() and vertical.any() and horizontal.any()
    same = classify.augment(batch, rotation_step=0, flips=False, translate=0.0)
    torch.testing.assert_close(same, batch, atol=1e-5, rtol=0)


def test_super_network_starts_near_bicubic_and_passes_gradients_outside_the_pixel_range():
    torch.manual_seed(1)
    experiment = {"input": "super:srcnn:x4_bicubic", "backbone": "dcnn", "backbone_options": {"width": 0.25},
                  "sr_options": {"channels": [8, 4]}}
    model = classify.build_classifier(experiment, scale=4)
    lr = torch.full((2, 1, 12, 12), 0.98)  # a bright background, as in G-band crops
    lr[:, :, 4:8, 4:8] = 0.2
    bicubic = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
    assert (model.upscaled(lr) - bicubic).abs().mean() < 0.02  # SR layers start at the skip

    with torch.no_grad():
        model.sr.body[-1].bias.fill_(0.5)  # push every pixel above 1
    model(lr).sum().backward()
    assert model.sr.body[0].weight.grad.abs().sum() > 0  # no clamp swallowing the gradient
