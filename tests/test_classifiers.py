"""Classification backbones: shapes at several input sizes, features, gradients, width/depth,
published parameter counts, registry errors and safe weight loading."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from karyosr.classify.backbones import (
    BACKBONES,
    DCNN,
    InceptionResNetV2,
    ResNet18,
    ResNet50,
    VGG19,
    Xception,
    build_backbone,
    load_weights,
)
from karyosr.weights import count_parameters

# tiny but structurally complete (every block type present) networks for fast CPU tests
TINY = {
    "dcnn": {"width": 0.125},
    "resnet18": {"width": 0.125, "depth": [1, 1, 1, 1]},
    "resnet50": {"width": 0.125, "depth": [1, 1, 1, 1]},
    "vgg19": {"width": 0.125, "depth": [1, 1, 1, 1, 1]},
    "xception": {"width": 0.125, "middle_repeats": 1},
    "inception_resnet_v2": {"width": 0.125, "repeats": [1, 1, 1]},
    "plain_cnn": {"width": 0.125, "convs_per_stage": 1},
}
SIZES = [(48, 48), (64, 64), (96, 96), (128, 80), (32, 32)]
NAMES = sorted(BACKBONES)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # the tiny networks gain nothing from intra-op threads, and on busy CPUs threads contend badly
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(name, **kwargs):
    return build_backbone(name, **{**TINY[name], **kwargs})


def first_conv(model):
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def test_registry_names():
    assert set(BACKBONES) == {"dcnn", "resnet18", "resnet50", "vgg19", "xception", "inception_resnet_v2", "plain_cnn"}
    assert BACKBONES["xception"] is Xception and BACKBONES["resnet50"] is ResNet50


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_forward_shapes(name, size):
    model = tiny(name)
    x = torch.rand(2, 1, *size)
    out = model(x)  # training mode: BN uses batch statistics
    assert out.shape == (2, 24)
    assert torch.isfinite(out).all()
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 24)


@pytest.mark.parametrize("name", NAMES)
def test_features_and_classifier(name):
    model = tiny(name, num_classes=7).eval()
    x = torch.rand(3, 1, 64, 72)
    with torch.no_grad():
        feats = model.features(x)
        out = model(x)
    assert feats.shape == (3, model.num_features)
    assert out.shape == (3, 7)
    torch.testing.assert_close(out, model.classifier(feats))


@pytest.mark.parametrize("name", NAMES)
def test_minimum_input_size(name):
    model = tiny(name)
    assert model.min_input_size == 32
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 24)
    for shape in [(31, 32), (32, 31), (16, 16)]:
        with pytest.raises(ValueError, match="minimum input size 32x32"):
            model(torch.rand(2, 1, *shape))


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "inception_resnet_v2", "xception"])
def test_small_input_stem_is_the_default(name):
    published, default = tiny(name, small_input=False), tiny(name)
    assert default.small_input
    x = torch.rand(2, 1, 32, 32)
    assert default(x).shape == published(x).shape == (2, 24)
    # IRv2 and Xception change only a stride; ResNet's 3x3 stem is smaller than the 7x7
    if name in ("inception_resnet_v2", "xception"):
        assert count_parameters(default) == count_parameters(published)
    else:
        assert count_parameters(default) < count_parameters(published)


def test_default_stems_keep_a_spatial_map_for_48_px_crops():
    """The published ImageNet stems shrink a 48 px crop 4x before the first block; the default
    small-input stems keep a map of several positions to the last block (IRv2: see below)."""
    resnet, xception = tiny("resnet18").eval(), tiny("xception").eval()
    x = torch.rand(1, 1, 48, 48)
    with torch.no_grad():
        assert resnet.stem(x).shape[-2:] == (24, 24)
        assert resnet.stages(resnet.stem(x)).shape[-2:] == (3, 3)
        full = tiny("resnet18", stem_stride=1).eval()
        assert full.stages(full.stem(x)).shape[-2:] == (6, 6)
        assert xception.exit(xception.middle(xception.entry(xception.stem(x)))).shape[-2:] == (3, 3)


@pytest.mark.parametrize(
    ("small_input", "size", "final"), [(False, 64, 2), (False, 32, 1), (True, 32, 2), (True, 48, 3), (False, 299, 10)]
)
def test_inception_resnet_v2_final_map(small_input, size, final):
    model = tiny("inception_resnet_v2", small_input=small_input).eval()
    seen = []
    model.conv_last.register_forward_hook(lambda module, args, out: seen.append(tuple(out.shape[-2:])))
    with torch.no_grad():
        model(torch.rand(1, 1, size, size))
    assert seen == [(final, final)]


@pytest.mark.parametrize("name", NAMES)
def test_default_depth_at_tiny_width(name):
    model = build_backbone(name, width=0.0625)
    out = model(torch.rand(2, 1, 64, 48))
    assert out.shape == (2, 24)
    out.sum().backward()
    assert first_conv(model).weight.grad is not None


def test_vgg19_hard_minimum_without_the_check():
    # the five unpadded 2x2 max-pools need 32 px: below that the trunk itself fails
    model = tiny("vgg19").eval()
    with pytest.raises(RuntimeError):
        model.body(torch.rand(1, 1, 31, 31))


def test_wrong_input_channels_or_rank():
    model = tiny("dcnn")
    with pytest.raises(ValueError, match="1 input channel"):
        model(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="expected a"):
        model(torch.rand(1, 64, 64))


@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_first_conv(name):
    model = tiny(name)
    x = torch.rand(4, 1, 48, 56)
    target = torch.tensor([0, 5, 22, 23])
    loss = nn.functional.cross_entropy(model(x), target)
    loss.backward()
    grad = first_conv(model).weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_width_and_depth_change_parameter_count(name):
    small = count_parameters(tiny(name))
    assert count_parameters(tiny(name, width=0.25)) > small
    assert count_parameters(tiny(name, num_classes=10)) < small
    deeper = {
        "dcnn": {"depth": 6}, "resnet18": {"depth": [2, 1, 1, 1]}, "resnet50": {"depth": [1, 1, 2, 1]},
        "vgg19": {"depth": [1, 1, 2, 1, 1]}, "xception": {"middle_repeats": 2},
        "inception_resnet_v2": {"repeats": [1, 2, 1]}, "plain_cnn": {"convs_per_stage": 2},
    }[name]
    shallower = {"dcnn": {"depth": 5}}.get(name)
    if shallower:
        assert count_parameters(tiny(name, **shallower)) < small
    else:
        assert count_parameters(tiny(name, **deeper)) > small


def test_width_floor_of_four_channels():
    model = DCNN(width=0.01)
    assert first_conv(model).out_channels == 4
    assert model.num_features == 5  # round(512 * 0.01)


def _count_on_meta(name, **kwargs):
    with torch.device("meta"):  # no memory, no real initialisation: counts only
        return count_parameters(build_backbone(name, **kwargs))


def test_published_parameter_counts():
    # ImageNet configurations match the reference implementations
    # (torchvision resnet18 / resnet50, Keras Xception trainable parameters)
    imagenet = dict(num_classes=1000, in_channels=3, small_input=False)
    assert _count_on_meta("resnet18", **imagenet) == 11_689_512
    assert _count_on_meta("resnet50", **imagenet) == 25_557_032
    assert _count_on_meta("xception", **imagenet) == 22_855_952
    assert _count_on_meta("vgg19", num_classes=1000, in_channels=3, batch_norm=False, pool_size=7) == 143_667_240
    # the chromosome defaults: 1 channel, 24 classes; the ResNets' 3x3 stem has 64 x (49 - 9)
    # weights fewer than the 7x7 ImageNet stem
    stem_saving = 64 * (49 - 9)
    assert _count_on_meta("resnet18", small_input=False) - _count_on_meta("resnet18") == stem_saving
    expected = {
        "dcnn": 1_194_920,
        "resnet18": 11_182_552 - stem_saving,
        "resnet50": 23_550_936 - stem_saving,
        "vgg19": 39_009_624,
        "xception": 20_855_552,
        "inception_resnet_v2": 32_281_976,
        # 3x3 convs 1-16-16-32-32-64-64-128-128, BN scale and shift, 128 -> 24 linear
        "plain_cnn": 9 * (16 + 16 * 16 + 16 * 32 + 32 * 32 + 32 * 64 + 64 * 64 + 64 * 128 + 128 * 128)
        + 2 * 2 * (16 + 32 + 64 + 128) + 128 * 24 + 24,
    }
    assert {name: _count_on_meta(name) for name in NAMES} == expected


def test_published_feature_sizes():
    with torch.device("meta"):
        sizes = {name: build_backbone(name).num_features for name in NAMES}
    assert sizes == {
        "dcnn": 512, "resnet18": 512, "resnet50": 2048, "vgg19": 4096, "xception": 2048,
        "inception_resnet_v2": 1536, "plain_cnn": 128,
    }


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match=r"unknown classification backbone 'alexnet'.*dcnn.*xception"):
        build_backbone("alexnet")


def test_unknown_argument_names_backbone():
    with pytest.raises(TypeError, match="xception.*repeats"):
        build_backbone("xception", repeats=[1, 1, 1])


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (ResNet18, {"width": 0}, "width"),
        (ResNet18, {"width": True}, "width"),
        (ResNet18, {"depth": [2, 2, 2]}, "depth"),
        (VGG19, {"depth": [2, 2, 0, 4, 4]}, "depth"),
        (DCNN, {"depth": 7}, "depth"),
        (Xception, {"middle_repeats": -1}, "middle_repeats"),
        (InceptionResNetV2, {"repeats": [1, 1]}, "repeats"),
        (DCNN, {"num_classes": 0}, "num_classes"),
        (VGG19, {"dropout": 1.0}, "dropout"),
    ],
)
def test_invalid_settings(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_weights_round_trip(name, tmp_path):
    source = tiny(name)
    source(torch.rand(4, 1, 48, 48))  # move BN running statistics away from their defaults
    source.eval()
    path = tmp_path / f"{name}.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    target = load_weights(tiny(name), path).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x))


def test_wrapped_checkpoint_and_module_prefix(tmp_path):
    source = tiny("resnet18").eval()
    path = tmp_path / "wrapped.pth"
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, path)
    target = load_weights(tiny("resnet18"), path).eval()
    x = torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x))


def test_pickled_object_refused(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(tiny("dcnn"), path)  # pickles the module object itself
    with pytest.raises(ValueError, match=r"whole_model\.pth.*weights_only"):
        load_weights(tiny("dcnn"), path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_weights(tiny("dcnn"), tmp_path / "nope.pth")


def test_key_mismatch_names_file_and_keys(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(tiny("resnet18").state_dict(), path)
    with pytest.raises(ValueError, match=r"resnet\.pth.*missing.*stages.*unexpected"):
        load_weights(tiny("resnet18", depth=[2, 1, 1, 1]), path)
    # strict=False loads what matches
    load_weights(tiny("resnet18", depth=[2, 1, 1, 1]), path, strict=False)
    with pytest.raises(ValueError, match=r"resnet\.pth.*shape mismatches"):
        load_weights(tiny("resnet18", width=0.25), path, strict=False)


def test_other_num_classes_needs_skip_classifier(tmp_path):
    source = tiny("xception", num_classes=24)
    path = tmp_path / "x24.pth"
    torch.save(source.state_dict(), path)
    with pytest.raises(ValueError, match="skip_classifier"):
        load_weights(tiny("xception", num_classes=2), path)
    target = tiny("xception", num_classes=2)
    head = target.classifier[1].weight.detach().clone()
    load_weights(target, path, skip_classifier=True)
    torch.testing.assert_close(target.classifier[1].weight, head)  # own head kept
    torch.testing.assert_close(first_conv(target).weight, first_conv(source).weight)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match=r"list\.pth.*state dict"):
        load_weights(tiny("dcnn"), path)
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"junk\.pth"):
        load_weights(tiny("dcnn"), path)


@pytest.mark.parametrize("name", NAMES)
def test_inputs_are_standardised_so_exposure_does_not_matter(name):
    """A darker or lower-contrast exposure of the same crop (a x + b, a > 0) gives the same
    logits; the switch turns standardisation off."""
    x = torch.rand(2, 1, 48, 48)
    model = tiny(name).eval()
    with torch.no_grad():
        # equal up to the eps that keeps a flat image finite
        torch.testing.assert_close(model(0.5 * x + 0.3), model(x), atol=1e-2, rtol=1e-2)
    assert not tiny(name, standardize_input=False).standardize_input


def test_standardize_gives_each_image_zero_mean_and_unit_spread():
    from karyosr.classify.backbones._common import standardize

    x = torch.rand(3, 1, 20, 30) * torch.tensor([0.1, 1.0, 5.0]).view(3, 1, 1, 1) + 2.0
    out = standardize(x, eps=0.0)
    torch.testing.assert_close(out.mean((-2, -1)), torch.zeros(3, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std((-2, -1)), torch.ones(3, 1), atol=1e-5, rtol=0)
    assert standardize(torch.full((1, 1, 8, 8), 0.7)).abs().max() < 1e-3  # a flat image stays finite
