"""Classification helpers: input keys, augmentation, Super-networks (statistics: test_class_metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from karyosr.classify import augment, input_keys, predict, supernet
from karyosr.classify.train import ClassifierTask
from test_classifiers import TINY


def test_parse_input_keys():
    assert input_keys.parse_input("hr") == {"kind": "hr"}
    assert input_keys.parse_input("lr:x4_bicubic") == {"kind": "lr", "profile": "x4_bicubic"}
    assert input_keys.parse_input("sr:srresnet:x4") == {"kind": "sr", "model": "srresnet", "profile": "x4"}
    assert input_keys.parse_input("super:srcnn:x4") == {"kind": "super", "arch": "srcnn", "profile": "x4"}
    with pytest.raises(ValueError, match="expected hr"):
        input_keys.parse_input("sr:x4")
    assert input_keys.input_slug("sr:srresnet:x4") == "sr-srresnet-x4"


def test_augment_keeps_shape_and_rotates_by_the_step():
    torch.manual_seed(0)
    batch = torch.zeros(64, 1, 32, 32)
    batch[:, :, 14:18, 4:28] = 1.0  # a horizontal bar
    out = augment.augment(batch, rotation_step=90, flips=False, translate=0.0)
    assert out.shape == batch.shape
    vertical = (out[:, 0, 4:28, 14:18].mean((1, 2)) > 0.9)
    horizontal = (out[:, 0, 14:18, 4:28].mean((1, 2)) > 0.9)
    assert (vertical | horizontal).all() and vertical.any() and horizontal.any()
    same = augment.augment(batch, rotation_step=0, flips=False, translate=0.0)
    torch.testing.assert_close(same, batch, atol=1e-5, rtol=0)


def test_augment_without_rotations_shifts_by_whole_pixels():
    """Every output is its input, maybe mirrored, moved by whole pixels (edges replicated): no
    resampling blur that test images never get."""
    torch.manual_seed(3)
    batch = torch.rand(32, 1, 20, 24)
    out = augment.augment(batch, rotation_step=0, flips=True, translate=0.2)
    shifts = set()
    for image, moved in zip(batch[:, 0].numpy(), out[:, 0].numpy()):
        matches = [(flip, dy, dx) for flip in (False, True) for dy in range(-4, 5) for dx in range(-4, 5)
                   if np.allclose(moved, _shifted(image[:, ::-1] if flip else image, dy, dx), atol=1e-5)]
        assert matches, "an augmented image is not a whole-pixel shift of its input"
        shifts.add(matches[0][1:])
    assert len(shifts) > 5  # the shifts vary, within 20 % of each side (4 px)


def _shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``image`` sampled at (y + dy, x + dx), coordinates clamped to the border."""
    rows = np.clip(np.arange(image.shape[0]) + dy, 0, image.shape[0] - 1)
    cols = np.clip(np.arange(image.shape[1]) + dx, 0, image.shape[1] - 1)
    return image[np.ix_(rows, cols)]


def test_augment_zooms_about_the_centre_within_the_range():
    """A centred square keeps its centre and its side changes by a factor within [1 / 1.5, 1.5];
    the factors vary and both shrink and enlarge."""
    torch.manual_seed(5)
    batch = torch.zeros(64, 1, 64, 64)
    batch[:, :, 24:40, 24:40] = 1.0  # 16 px square
    out = augment.augment(batch, rotation_step=0, flips=False, translate=0.0, zoom=0.5)
    area = out[:, 0].sum((1, 2))
    side = area.sqrt() / 16
    assert (side > 1 / 1.5 - 0.05).all() and (side < 1.5 + 0.05).all()
    assert (side < 0.9).any() and (side > 1.1).any()
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    centre_y = (out[:, 0] * ys).sum((1, 2)) / area
    centre_x = (out[:, 0] * xs).sum((1, 2)) / area
    torch.testing.assert_close(centre_y, torch.full_like(centre_y, 31.5), atol=0.3, rtol=0)
    torch.testing.assert_close(centre_x, torch.full_like(centre_x, 31.5), atol=0.3, rtol=0)


def test_super_network_starts_near_bicubic_and_passes_gradients_outside_the_pixel_range():
    torch.manual_seed(1)
    experiment = {"input": "super:srcnn:x4_bicubic", "backbone": "dcnn", "backbone_options": {"width": 0.25},
                  "sr_options": {"channels": [8, 4]}}
    model = supernet.build_classifier(experiment, scale=4)
    lr = torch.full((2, 1, 12, 12), 0.98)  # a bright background, as in G-band crops
    lr[:, :, 4:8, 4:8] = 0.2
    bicubic = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
    assert (model.upscaled(lr) - bicubic).abs().mean() < 0.02  # SR layers start at the skip

    with torch.no_grad():
        model.sr.body[-1].bias.fill_(0.5)  # push every pixel above 1
    model(lr).sum().backward()
    assert model.sr.body[0].weight.grad.abs().sum() > 0  # no clamp swallowing the gradient


def _shapes_problem(n_per_class: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four classes a classifier can only tell apart from the image: a short bar, a long bar,
    two bars and a square, dark on white with noise, each at a random position (so neither a
    flip nor a shift changes the class)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(4):
        for _ in range(n_per_class):
            image = np.full((size, size), 235.0)
            y, x = rng.integers(6, size - 22, 2)
            if label == 0:
                image[y + 8 : y + 11, x + 4 : x + 12] = 40
            elif label == 1:
                image[y + 8 : y + 11, x : x + 20] = 40
            elif label == 2:
                image[y + 4 : y + 7, x : x + 16] = 40
                image[y + 12 : y + 15, x : x + 16] = 40
            else:
                image[y + 4 : y + 14, x + 4 : x + 14] = 40
            images.append(np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8))
            labels.append(label)
    return np.stack(images), np.array(labels)


# the tiny backbones of the architecture tests; the DCNN at quarter rather than an eighth of its
# width, since without BatchNorm its sigmoid layers need a few more units to learn in 48 steps
RECIPE_BACKBONES = {**TINY, "dcnn": {"width": 0.25}}


@pytest.mark.parametrize("backbone", sorted(RECIPE_BACKBONES))
def test_every_backbone_learns_a_separable_problem_with_the_default_recipe(backbone, tmp_path):
    """The default recipe (one-cycle AdamW, label smoothing, passes over the training set) takes
    every backbone - the DCNN of Super-Xception with its sigmoid dense layers included - well
    above chance (25 %) in a short run."""
    from karyosr import config
    from karyosr.engine import FitSettings, fit, seed_everything

    torch.set_num_threads(1)
    seed_everything(0)
    experiment = config.validate({"classify": {"experiments": [
        {"name": "t", "input": "hr", "backbone": backbone, "backbone_options": RECIPE_BACKBONES[backbone],
         "epochs": 8, "batch_size": 32}]}})["classify"]
    experiment = {**experiment["experiments"][0], "bf16": False}
    train, val = _shapes_problem(48, seed=0), _shapes_problem(16, seed=1)
    model = supernet.build_classifier(experiment, scale=None)
    task = ClassifierTask(experiment, model, train, val, torch.device("cpu"), None, seed=0)
    total = experiment["epochs"] * task.steps_per_epoch
    result = fit(task, FitSettings(epochs=experiment["epochs"], steps_per_epoch=task.steps_per_epoch,
                                   checkpoint_dir=tmp_path, config_slice=experiment, select_by="val_accuracy",
                                   schedule="onecycle", warmup_steps=round(0.3 * total), progress=False))
    assert task.steps_per_epoch == 6  # one pass over 192 images at batch 32
    probabilities, _ = predict.infer(model, val[0], 255.0, torch.device("cpu"), bf16=False, tta=True)
    accuracy = float((probabilities.argmax(1) == val[1]).mean())
    assert accuracy >= 0.75, (backbone, accuracy, result.history["val_accuracy"].tolist())
