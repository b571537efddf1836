"""Super-resolution architectures: shapes at odd sizes, public RRDBNet layout, safe loading."""

from __future__ import annotations

import pytest
import torch

from karyosr.sr.archs import (
    ARCHS,
    VGG19_LAYERS,
    RRDBNet,
    SmallFeatureCNN,
    StepAttention,
    UNetSharpen,
    VGG19Features,
    VGGStyleDiscriminator,
    adapt_rgb_state_dict,
    build_sr,
    describe,
    final_output,
    load_weights,
    srfbn_loss,
)

TINY = {
    "srcnn": {"channels": (8, 4), "kernels": (5, 3, 3)},
    "srresnet": {"num_block": 1, "num_feat": 8},
    "rrdbnet": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4},
    "srfbn": {"num_feat": 8, "num_group": 2, "num_step": 2},
    "unet_sharpen": {"num_feat": 4, "depth": 3},
}
LR_H, LR_W = 13, 17


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _input_for(name, scale, n=2):
    if name == "unet_sharpen":  # same size in and out: it gets the already upsampled image
        return torch.rand(n, 1, LR_H * scale, LR_W * scale)
    return torch.rand(n, 1, LR_H, LR_W)


def test_registry_covers_the_five_architectures():
    assert set(ARCHS) == {"srcnn", "srresnet", "rrdbnet", "srfbn", "unet_sharpen"}
    assert ARCHS["rrdbnet"] is RRDBNet


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", sorted(TINY))
def test_output_shapes_at_odd_sizes(name, scale):
    model = build_sr(name, scale, **TINY[name]).eval()
    with torch.no_grad():
        out = model(_input_for(name, scale))
    outs = out if name == "srfbn" else [out]
    for y in outs:
        assert y.shape == (2, 1, LR_H * scale, LR_W * scale)
        assert torch.isfinite(y).all()


def test_x8_where_supported():
    for name in ("srcnn", "srresnet", "rrdbnet", "srfbn"):
        model = build_sr(name, 8, **TINY[name]).eval()
        with torch.no_grad():
            y = final_output(model(torch.rand(1, 1, 5, 7)))
        assert y.shape == (1, 1, 40, 56), name


def test_backward_through_every_architecture():
    for name in TINY:
        model = build_sr(name, 2, **TINY[name])
        out = model(_input_for(name, 2))
        loss = sum(y.mean() for y in out) if isinstance(out, list) else out.mean()
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads), name


def test_unet_sharpen_is_residual_and_pads_internally():
    model = UNetSharpen(num_feat=4, depth=3)
    torch.nn.init.zeros_(model.out.weight)
    torch.nn.init.zeros_(model.out.bias)
    x = torch.rand(1, 1, 9, 5)  # smaller than 8 px would not pool to 1/8 without padding
    assert torch.equal(model(x), x)
    assert UNetSharpen(num_feat=4, depth=3, upsample="nearest")(x).shape == x.shape
    assert build_sr("unet_sharpen", 4, num_feat=4).scale == 4


def test_srcnn_predicts_a_residual_over_bicubic():
    model = build_sr("srcnn", 2, **TINY["srcnn"])
    last = model.body[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.rand(1, 1, LR_H, LR_W)
    bicubic = torch.nn.functional.interpolate(x, size=(26, 34), mode="bicubic", align_corners=False)
    assert torch.allclose(model(x), bicubic)


def _bicubic(x, scale):
    return torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def test_srcnn_input_shift_centres_what_the_layers_see():
    x = torch.rand(1, 1, LR_H, LR_W)
    model = build_sr("srcnn", 2, **TINY["srcnn"], input_shift=0.5)
    up = _bicubic(x, 2)
    assert torch.allclose(model(x), up + model.body(up - 0.5))
    plain = build_sr("srcnn", 2, **TINY["srcnn"], residual=False)  # SRCNN's mapping: no skip
    assert torch.allclose(plain(x), plain.body(up))


@pytest.mark.parametrize("name", ["srresnet", "rrdbnet", "srfbn", "unet_sharpen"])
def test_input_shift_is_a_shift_of_the_input_only(name):
    # A shifted model equals the unshifted one fed x - shift, apart from the image skip, which
    # adds the unshifted bicubic image (unet: the input itself).
    options = {**TINY[name], **({"bicubic_residual": True} if name in ("srresnet", "rrdbnet") else {})}
    torch.manual_seed(1)
    shifted = build_sr(name, 2, **options, input_shift=0.5).eval()
    torch.manual_seed(1)
    plain = build_sr(name, 2, **options).eval()
    x = _input_for(name, 2, n=1)
    skip = x if name == "unet_sharpen" else _bicubic(x, 2)
    with torch.no_grad():
        left = final_output(shifted(x)) - skip
        right = final_output(plain(x - 0.5)) - (skip - 0.5 if name == "unet_sharpen" else _bicubic(x - 0.5, 2))
    assert torch.allclose(left, right, atol=1e-5)


@pytest.mark.parametrize("scale", [2, 4])
def test_rrdbnet_bicubic_variant_starts_at_bicubic_with_the_public_layout(scale):
    variant = RRDBNet(scale, num_feat=8, num_block=2, num_grow_ch=4, bicubic_residual=True, input_shift=0.5)
    assert set(variant.state_dict()) == _rrdb_keys(2, 1 if scale == 2 else 2)  # public checkpoints still load
    x = torch.rand(2, 1, LR_H, LR_W)
    with torch.no_grad():
        residual = variant(x) - _bicubic(x, scale)
        published = RRDBNet(scale, num_feat=8, num_block=2, num_grow_ch=4)(x)
    assert residual.abs().mean() < 0.02  # within ~5 grey levels of bicubic
    assert (published - _bicubic(x, scale)).abs().mean() > 5 * residual.abs().mean()


def test_srresnet_msrresnet_variant_has_no_batch_norm_and_starts_at_bicubic():
    model = build_sr("srresnet", 4, num_block=2, num_feat=8, bicubic_residual=True, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in build_sr("srresnet", 4, **TINY["srresnet"]).modules())
    x = torch.rand(2, 1, LR_H, LR_W)
    with torch.no_grad():
        assert torch.allclose(model(x), _bicubic(x, 4))  # zero tail: exactly bicubic at the start


def test_unet_sharpen_starts_close_to_its_input():
    x = torch.rand(2, 1, 24, 24)
    with torch.no_grad():
        assert (build_sr("unet_sharpen", 4, num_feat=8, depth=2)(x) - x).abs().mean() < 0.02


def test_describe_names_published_networks_and_variants():
    assert describe(build_sr("srcnn", 4, input_shift=0.5)) == (
        "SRCNN layers, VDSR-style variant (bicubic residual, same padding; input shifted by 0.5)")
    assert describe(build_sr("srcnn", 4, residual=False)) == "SRCNN mapping (same padding)"
    assert describe(build_sr("srresnet", 4, **TINY["srresnet"])) == "SRResNet"
    assert describe(build_sr("srresnet", 4, **TINY["srresnet"], bicubic_residual=True, batch_norm=False)) == (
        "SRResNet, MSRResNet-style variant (no BatchNorm, bicubic residual)")
    assert describe(build_sr("rrdbnet", 4, **TINY["rrdbnet"])) == "RRDBNet (ESRGAN generator)"
    assert describe(build_sr("rrdbnet", 4, **TINY["rrdbnet"], bicubic_residual=True, input_shift=0.5)) == (
        "RRDBNet (ESRGAN generator), variant (bicubic residual, input shifted by 0.5)")
    assert describe(build_sr("srfbn", 4, **TINY["srfbn"])) == "SRFBN"


def _rrdb_keys(num_block, ups):
    keys = {"conv_first", "conv_body", "conv_hr", "conv_last"} | {f"conv_up{i}" for i in range(1, ups + 1)}
    keys |= {f"body.{b}.rdb{r}.conv{c}" for b in range(num_block) for r in (1, 2, 3) for c in range(1, 6)}
    return {f"{k}.{p}" for k in keys for p in ("weight", "bias")}


def test_rrdbnet_state_dict_follows_the_public_layout():
    x4 = RRDBNet(4, num_feat=8, num_block=2, num_grow_ch=4).state_dict()
    assert set(x4) == _rrdb_keys(2, 2)
    assert "body.1.rdb3.conv5.weight" in x4 and "conv_up2.weight" in x4
    assert x4["body.1.rdb3.conv5.weight"].shape == (8, 8 + 4 * 4, 3, 3)
    assert x4["conv_first.weight"].shape == (8, 1, 3, 3)
    x2 = RRDBNet(2, num_feat=8, num_block=2, num_grow_ch=4).state_dict()
    assert set(x2) == _rrdb_keys(2, 1)  # x2: one nearest-x2 + conv_up1 step, no conv_up2


def _randomise_biases(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    return model


def test_adapt_rgb_state_dict_matches_the_mean_of_rgb_outputs(tmp_path):
    kw = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}
    rgb = _randomise_biases(RRDBNet(4, num_in_ch=3, num_out_ch=3, **kw)).eval()
    sd = rgb.state_dict()
    adapted = adapt_rgb_state_dict({"params_ema": sd})
    assert adapted["conv_first.weight"].shape == (8, 1, 3, 3)
    assert adapted["conv_last.weight"].shape == (1, 8, 3, 3) and adapted["conv_last.bias"].shape == (1,)
    assert sd["conv_first.weight"].shape == (8, 3, 3, 3), "the input state dict must not be modified"
    assert torch.equal(adapt_rgb_state_dict(adapted)["conv_first.weight"], adapted["conv_first.weight"])

    gray_model = RRDBNet(4, **kw).eval()
    gray_model.load_state_dict(adapted, strict=True)
    g = torch.rand(2, 1, LR_H, LR_W)
    with torch.no_grad():
        expected = rgb(g.repeat(1, 3, 1, 1)).mean(1, keepdim=True)
        got = gray_model(g)
    assert got.shape == (2, 1, 4 * LR_H, 4 * LR_W)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)

    # load_weights does the same by itself, for the wrappers the public files use
    for wrapper in ("params_ema", "params"):
        path = tmp_path / f"rgb_{wrapper}.pth"
        torch.save({wrapper: sd}, path)
        model = load_weights(RRDBNet(4, **kw).eval(), path)
        with torch.no_grad():
            assert torch.allclose(model(g), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(TINY))
def test_checkpoint_round_trip(name, tmp_path):
    model = _randomise_biases(build_sr(name, 2, **TINY[name])).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    fresh = load_weights(build_sr(name, 2, **TINY[name]), path).eval()
    x = _input_for(name, 2)
    with torch.no_grad():
        assert torch.equal(final_output(fresh(x)), final_output(model(x)))


class NotATensor:
    """Any pickled Python object: weights_only loading must refuse it."""

    def __init__(self):
        self.payload = "arbitrary"


def test_load_weights_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"params": NotATensor()}, path)
    with pytest.raises(ValueError, match="evil.pth") as info:
        load_weights(build_sr("srcnn", 2, **TINY["srcnn"]), path)
    assert "weights_only" in str(info.value) and "NotATensor" in str(info.value)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a torch file")
    with pytest.raises(ValueError, match="junk.pth"):
        load_weights(build_sr("srcnn", 2, **TINY["srcnn"]), junk)


def test_load_weights_names_mismatched_keys(tmp_path):
    path = tmp_path / "srcnn.pth"
    torch.save(build_sr("srcnn", 2, **TINY["srcnn"]).state_dict(), path)
    with pytest.raises(ValueError, match="srcnn.pth") as info:
        load_weights(build_sr("srresnet", 2, **TINY["srresnet"]), path)
    message = str(info.value)
    assert "missing" in message and "unexpected" in message and "body.0.weight" in message
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_weights(build_sr("srcnn", 2), tmp_path / "nope.pth")


def test_original_esrgan_names_are_renamed(tmp_path):
    kw = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}
    rgb = _randomise_biases(RRDBNet(4, num_in_ch=3, num_out_ch=3, **kw))
    legacy = {}
    for key, value in rgb.state_dict().items():
        for new, old in (("body.", "RRDB_trunk."), (".rdb", ".RDB"), ("conv_body", "trunk_conv"), ("conv_up", "upconv"), ("conv_hr", "HRconv")):
            key = key.replace(new, old)
        legacy[key] = value
    assert "RRDB_trunk.0.RDB3.conv5.weight" in legacy and "HRconv.bias" in legacy
    path = tmp_path / "RRDB_ESRGAN_x4.pth"
    torch.save(legacy, path)
    model = load_weights(RRDBNet(4, **kw), path)
    assert torch.equal(model.conv_hr.bias, rgb.conv_hr.bias)


def test_public_x4_layout_initialises_an_x2_model_non_strictly(tmp_path):
    kw = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}
    x4 = _randomise_biases(RRDBNet(4, num_in_ch=3, num_out_ch=3, **kw))
    path = tmp_path / "x4.pth"
    torch.save({"params_ema": x4.state_dict()}, path)
    with pytest.raises(ValueError, match="conv_up2"):
        load_weights(RRDBNet(2, **kw), path)
    x2 = load_weights(RRDBNet(2, **kw), path, strict=False)
    assert torch.equal(x2.conv_up1.weight, x4.conv_up1.weight)


def test_srfbn_steps_and_attention_weighted_loss():
    model = build_sr("srfbn", 4, num_feat=8, num_group=2, num_step=3)
    x = torch.rand(2, 1, LR_H, LR_W)
    target = torch.rand(2, 1, 4 * LR_H, 4 * LR_W)
    outs = model(x)
    assert isinstance(outs, list) and len(outs) == 3

    attention = StepAttention(3)
    loss, weights = srfbn_loss(outs, target, attention)
    assert weights.shape == (3,) and torch.all(weights > 0)
    assert torch.isclose(weights.sum(), torch.tensor(1.0))
    loss.backward()
    assert all(p.grad is not None for p in attention.parameters())
    assert model.conv_out.weight.grad is not None

    with torch.no_grad():
        attention.score.bias.zero_()
        attention.score.weight.add_(torch.randn_like(attention.score.weight))
        attention.step_embedding.add_(torch.randn_like(attention.step_embedding))
        _, changed = srfbn_loss([o.detach() for o in outs], target, attention)
    assert not torch.allclose(changed, weights)
    assert torch.isclose(changed.sum(), torch.tensor(1.0))

    uniform_loss, uniform = srfbn_loss(outs, target, None)
    assert torch.allclose(uniform, torch.full((3,), 1 / 3))
    assert torch.isclose(uniform_loss, torch.stack([(o - target).abs().mean() for o in outs]).mean())

    floored = StepAttention(3, floor=0.6)(outs)
    assert torch.all(floored >= 0.2 - 1e-6) and torch.isclose(floored.sum(), torch.tensor(1.0))


@pytest.mark.parametrize("scale", [2, 4])
def test_srfbn_feedback_path_keeps_signal_at_init(scale):
    # With PyTorch's default init the HR features shrink ~40x through the feedback block and
    # the network never leaves its bicubic skip; the He init keeps them at the input's scale.
    torch.manual_seed(0)
    model = build_sr("srfbn", scale, num_feat=32, num_group=3, num_step=4)
    x = torch.rand(4, 1, 24, 24)
    with torch.no_grad():
        feat = model.feat_in(model.conv_in(x))
        hr_features = model.out_up(model.block(feat, feat))
    assert hr_features.std() > 0.3 * x.std()


@pytest.mark.parametrize("size", [(32, 32), (50, 70)])
def test_discriminator_any_size(size):
    disc = VGGStyleDiscriminator(num_feat=4, num_stages=4)
    logits = disc(torch.rand(3, 1, *size))
    assert logits.shape == (3, 1)
    logits.sum().backward()
    assert VGGStyleDiscriminator(num_feat=4, use_bn=False)(torch.rand(1, 1, *size)).shape == (1, 1)


VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def _torchvision_vgg19_state_dict():
    """Random tensors under torchvision's VGG19 key names (features.<i>, classifier.<i>)."""
    sd, index, cin = {}, 0, 3
    for v in VGG19_CFG:
        if v == "M":
            index += 1
            continue
        sd[f"features.{index}.weight"] = torch.randn(v, cin, 3, 3) * 0.05
        sd[f"features.{index}.bias"] = torch.randn(v) * 0.05
        index, cin = index + 2, v  # conv, then ReLU
    sd["classifier.0.weight"] = torch.randn(8, 4)  # any classifier tensors are ignored
    sd["classifier.0.bias"] = torch.randn(8)
    return sd


def test_vgg19_features_loads_torchvision_layout(tmp_path):
    assert VGG19_LAYERS["conv1_1"] == 0 and VGG19_LAYERS["relu1_1"] == 1
    assert VGG19_LAYERS["conv5_4"] == 34 and VGG19_LAYERS["relu5_4"] == 35 and VGG19_LAYERS["pool5"] == 36
    sd = _torchvision_vgg19_state_dict()
    path = tmp_path / "vgg19.pth"
    torch.save(sd, path)

    vgg = VGG19Features(path, layer="conv5_4")
    assert torch.equal(vgg.features[34].weight, sd["features.34.weight"])
    assert len(vgg.features) == 35
    assert not any(p.requires_grad for p in vgg.parameters())
    x = torch.rand(2, 1, 32, 48, requires_grad=True)
    feats = vgg(x)
    assert feats.shape == (2, 512, 2, 3)
    assert (feats < 0).any(), "conv5_4 is taken before its ReLU"
    feats.mean().backward()
    assert x.grad is not None

    relu = VGG19Features(path, layer="relu2_2", use_input_norm=False)
    out = relu(torch.rand(1, 1, 16, 16))
    assert out.shape == (1, 128, 8, 8) and (out >= 0).all()

    del sd["features.34.bias"]
    torch.save(sd, path)
    with pytest.raises(ValueError, match="features.34.bias"):
        VGG19Features(path)
    with pytest.raises(ValueError, match="conv6_1"):
        VGG19Features(path, layer="conv6_1")


def test_small_feature_cnn():
    net = SmallFeatureCNN(channels=(4, 8, 16))
    x = torch.rand(2, 1, 33, 20)
    assert net.features(x).shape == (2, 16, 8, 5)
    assert [m.shape[1] for m in net.feature_maps(x)] == [4, 8, 16]
    assert torch.equal(net(x), net.features(x))
    assert SmallFeatureCNN(channels=(4, 8), num_classes=24)(x).shape == (2, 24)


def test_build_sr_errors():
    with pytest.raises(ValueError, match="'edsr'") as info:
        build_sr("edsr", 4)
    assert all(name in str(info.value) for name in ARCHS)
    with pytest.raises(ValueError, match="unsupported scale 5"):
        build_sr("rrdbnet", 5)
    with pytest.raises(ValueError, match="scale"):
        build_sr("srfbn", 2.0)


@pytest.mark.parametrize("old_arch, old_options, arch", [
    ("esrgan", {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}, "rrdbnet"),
    ("srresnet", {"num_blocks": 1, "num_features": 8}, "srresnet"),
    ("srfbn", {"num_features": 8, "num_groups": 2, "num_steps": 2}, "srfbn"),
    ("unet_sharpen", {"base_channels": 4, "depth": 2}, "unet_sharpen"),
])
def test_model_files_written_under_the_old_names_still_load(tmp_path, old_arch, old_options, arch):
    """Models trained before the options took BasicSR's names (and RRDBNet its own) rebuild."""
    from karyosr import model_file
    from karyosr.renames import upgrade_options
    from karyosr.sr.archs import final_output
    from karyosr.sr.infer import load_model

    options = upgrade_options(arch, old_options)
    net = build_sr(arch, 4, **options)
    path = tmp_path / "old.safetensors"
    model_file.save(path, net.state_dict(), {"kind": "sr", "name": "old", "arch": old_arch, "scale": 4,
                                             "options": old_options})
    loaded, meta = load_model(path)
    assert meta["arch"] == arch and meta["options"] == options
    x = torch.rand(1, 1, 6, 6)
    assert torch.equal(final_output(loaded(x)), final_output(net.eval()(x)))
