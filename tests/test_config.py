"""Tests for karyosr.config: schema defaults, the shipped configs, and errors that name the key."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from karyosr import config
from karyosr.config import ConfigError, load_schema, validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = load_schema()


def profiles(**named) -> object:
    """``degrade.profiles`` in whichever form the schema takes (a list of named profiles, or a
    mapping from name to profile)."""
    if SCHEMA["properties"]["degrade"]["properties"]["profiles"]["type"] == "array":
        return [{"name": name, **profile} for name, profile in named.items()]
    return dict(named)


def profile_list(config: dict) -> list[tuple[str, dict]]:
    value = config["degrade"]["profiles"]
    if isinstance(value, list):
        return [(p["name"], p) for p in value]
    return list(value.items())


def error_of(config: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate(config)
    return str(info.value)


# --------------------------------------------------------------------------- defaults


def _check_defaults(instance, schema, path="config"):
    """Every property with a schema default is present; scalar defaults equal the schema's."""
    for name, sub in schema.get("properties", {}).items():
        if "default" not in sub:
            continue
        assert name in instance, f"{path}.{name} missing"
        value = instance[name]
        if sub.get("type") == "object" and "properties" in sub:
            _check_defaults(value, sub, f"{path}.{name}")
        elif not isinstance(sub["default"], (dict, list)):
            assert value == sub["default"], f"{path}.{name}"


def test_empty_config_gets_all_defaults():
    config = validate({})
    assert set(config) == set(SCHEMA["properties"])
    _check_defaults(config, SCHEMA)
    assert config["seed"] == SCHEMA["properties"]["seed"]["default"]
    assert config["crop_filter"]["threshold"] == "otsu"
    assert config["dataset"]["layout"]["type"] == "bioimlab"
    assert sum(config["split"]["fractions"].values()) == pytest.approx(1.0)
    # profile defaults (kernel, noise...) are filled into each default profile too
    assert profile_list(config)
    for name, profile in profile_list(config):
        assert {"scale", "kernel", "blur_sigma", "noise", "noise_sigma"} <= set(profile), name


def test_validate_fills_in_place_and_keeps_given_values():
    config = {"seed": 5, "crop_filter": {"margin": 7}}
    result = validate(config)
    assert result is config
    assert config["seed"] == 5 and config["crop_filter"]["margin"] == 7
    assert config["crop_filter"]["min_foreground_px"] == SCHEMA["properties"]["crop_filter"]["properties"][
        "min_foreground_px"]["default"]


def test_profile_defaults_filled_into_user_profiles():
    config = validate({"crop_filter": {"target_size": 64}, "degrade": {"profiles": profiles(mine={"scale": 2})}})
    ((name, profile),) = profile_list(config)
    assert name == "mine"
    assert profile["kernel"] == "bicubic" and profile["noise"] == "none"
    assert profile["blur_sigma"] == 0 and profile["noise_sigma"] == 0


def test_defaults_are_not_shared_between_configs():
    first = validate({})
    first["upscale"]["methods"].append("mutated")
    first["split"]["fractions"]["train"] = 0.0
    second = validate({})
    assert "mutated" not in second["upscale"]["methods"]
    assert second["split"]["fractions"]["train"] > 0
    assert "mutated" not in SCHEMA["properties"]["upscale"]["properties"]["methods"]["default"]


@pytest.mark.parametrize("name", ["config.yaml", "gband.yaml"])
def test_shipped_configs_validate(name):
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    validated = validate(copy.deepcopy(config))
    assert validated["dataset"]["name"] == config["dataset"]["name"]
    size = validated["crop_filter"]["target_size"]
    for _, profile in profile_list(validated):
        assert size % profile["scale"] == 0


@pytest.mark.parametrize("name", ["metaphase.yaml", "photos.yaml"])
def test_whole_image_configs_validate(name):
    validated = validate(yaml.safe_load((ROOT / "config" / name).read_text()))
    assert validated["classify"]["experiments"] == []


def test_readme_example_configs_validate():
    """Every YAML block of config/README.md that is a whole config (it has a dataset) validates."""
    import re

    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "config/README.md").read_text(), re.S)
    configs = [yaml.safe_load(block) for block in blocks]
    configs = [c for c in configs if isinstance(c, dict) and "dataset" in c]
    assert configs, "config/README.md shows no whole example config"
    for config in configs:
        validate(config)


def test_images_layout_takes_synthetic_and_restoration_profiles():
    config = validate({"dataset": {"layout": {"type": "images", "group": "folder"}},
                       "tiles": {"size": 96},
                       "degrade": {"profiles": [{"name": "x4", "scale": 4},
                                                {"name": "restore", "scale": 1, "contrast_loss": [0.1, 0.3]}]},
                       "sr": {"profiles": ["x4", "restore"]}, "classify": {"experiments": []}})
    assert [p["scale"] for p in config["degrade"]["profiles"]] == [4, 1]


@pytest.mark.parametrize("change, message", [
    ({"tiles": {"size": 100}}, "degrade.profiles.0.scale: profile 'x3' has scale 3, which does not divide tiles.size 100"),
    ({"degrade": {"profiles": [{"name": "x4", "scale": 4, "paired": True}]}},
     "for synthetic LR made from your images drop paired: true"),
    ({"degrade": {"profiles": [{"name": "r", "scale": 1, "contrast_loss": 1.0}]}},
     "degrade.profiles.0.contrast_loss"),
])
def test_images_layout_errors_give_the_way_out(change, message):
    config = {"dataset": {"layout": {"type": "images"}}, "degrade": {"profiles": [{"name": "x3", "scale": 3}]},
              "sr": {"profiles": []}, "classify": {"experiments": []}, **change}
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(config)


def test_magnification_series_with_synthetic_profile_points_to_images_layout():
    config = {"dataset": {"layout": {"type": "magnification_series"}}, "degrade": {"profiles": [{"name": "x4", "scale": 4}]},
              "sr": {"profiles": []}, "classify": {"experiments": []}}
    with pytest.raises(ConfigError, match="use dataset.layout.type images"):
        validate(config)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "config, key, value",
    [
        ({"seed": -1}, "seed", "-1"),
        ({"shards": 0}, "shards", "0"),
        ({"crop_filter": {"margin": -3}}, "crop_filter.margin", "-3"),
        ({"crop_filter": {"min_foreground_px": 0}}, "crop_filter.min_foreground_px", "0"),
        ({"crop_filter": {"target_size": 0}}, "crop_filter.target_size", "0"),
        ({"ingest": {"max_pixels": 0}}, "ingest.max_pixels", "0"),
        ({"metrics": {"ssim_sigma": 0}}, "metrics.ssim_sigma", "0"),
        ({"metrics": {"ssim_k1": -0.01}}, "metrics.ssim_k1", "-0.01"),
        ({"dataset": {"source": {"timeout": 0}}}, "dataset.source.timeout", "0"),
        ({"split": {"fractions": {"train": 1.2, "val": -0.1, "test": -0.1}}}, "split.fractions", "-0.1"),
        ({"report": {"sample_images": 0}}, "report.sample_images", "0"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_negative_or_zero_values(config, key, value):
    message = error_of(config)
    assert key in message
    assert value in message


def test_negative_profile_value_names_profile_key():
    message = error_of({"crop_filter": {"target_size": 64},
                        "degrade": {"profiles": profiles(p={"scale": 4, "blur_sigma": -1})}})
    assert "degrade.profiles" in message and "blur_sigma" in message and "-1" in message


def test_unknown_top_level_key():
    message = error_of({"sed": 1})
    assert "'sed'" in message


def test_unknown_nested_key_names_section_and_key():
    message = error_of({"crop_filter": {"target_sise": 64}})
    assert "crop_filter" in message and "'target_sise'" in message


def test_unknown_key_in_profile():
    message = error_of({"crop_filter": {"target_size": 64},
                        "degrade": {"profiles": profiles(p={"scale": 4, "sigma": 1})}})
    assert "degrade.profiles" in message and "'sigma'" in message


def test_wrong_kernel_enum():
    message = error_of({"crop_filter": {"target_size": 64},
                        "degrade": {"profiles": profiles(p={"scale": 4, "kernel": "cubic"})}})
    assert "degrade.profiles" in message and "kernel" in message and "'cubic'" in message
    assert "bicubic" in message  # says what is allowed


@pytest.mark.parametrize(
    "config, key, value",
    [
        ({"crop_filter": {"polarity": "dark"}}, "crop_filter.polarity", "'dark'"),
        ({"crop_filter": {"threshold": "mean"}}, "crop_filter.threshold", "'mean'"),
        ({"dataset": {"layout": {"type": "folders"}}}, "dataset.layout.type", "'folders'"),
        ({"dataset": {"source": {"type": "s3"}}}, "dataset.source.type", "'s3'"),
        ({"upscale": {"methods": ["bicubic", "sinc"]}}, "upscale.methods", "'sinc'"),
    ],
)
def test_wrong_enum(config, key, value):
    message = error_of(config)
    assert key in message and value in message


@pytest.mark.parametrize(
    "fractions",
    [{"train": 0.7, "val": 0.2, "test": 0.2}, {"train": 0.5, "val": 0.2, "test": 0.2}, {"train": 0, "val": 0, "test": 0}],
)
def test_split_fractions_must_sum_to_one(fractions):
    message = error_of({"split": {"fractions": fractions}})
    assert "split.fractions" in message
    assert str(fractions["val"]) in message


def test_split_fractions_with_zero_split_is_fine():
    config = validate({"split": {"fractions": {"train": 0.8, "val": 0.0, "test": 0.2}}})
    assert config["split"]["fractions"]["val"] == 0.0


def test_split_fractions_need_all_three():
    message = error_of({"split": {"fractions": {"train": 0.8, "test": 0.2}}})
    assert "split.fractions" in message and "val" in message


def test_scale_must_divide_target_size():
    message = error_of({"crop_filter": {"target_size": 64},
                        "degrade": {"profiles": profiles(ok={"scale": 4}, odd={"scale": 3})}})
    assert "degrade.profiles" in message and "odd" in message and "scale" in message
    assert "3" in message and "64" in message and "crop_filter.target_size" in message


def test_scale_dividing_target_size_is_fine():
    config = validate({"crop_filter": {"target_size": 96},
                       "degrade": {"profiles": profiles(a={"scale": 3}, b={"scale": 8})}})
    assert config["crop_filter"]["target_size"] == 96


def test_scale_outside_enum():
    message = error_of({"crop_filter": {"target_size": 60},
                        "degrade": {"profiles": profiles(p={"scale": 5})}})
    assert "degrade.profiles" in message and "scale" in message and "5" in message


def test_range_low_above_high():
    message = error_of({"crop_filter": {"target_size": 64},
                        "degrade": {"profiles": profiles(p={"scale": 4, "noise": "gaussian", "noise_sigma": [8, 2]})}})
    assert "degrade.profiles" in message and "noise_sigma" in message and "[8, 2]" in message


def test_jpeg_quality_out_of_range():
    message = error_of({"crop_filter": {"target_size": 64},
                        "degrade": {"profiles": profiles(p={"scale": 4, "jpeg_quality": 101})}})
    assert "jpeg_quality" in message and "101" in message


def test_url_source_without_sha256():
    message = error_of({"dataset": {"source": {"type": "url", "url": "https://example.org/data.zip"}}})
    assert "dataset.source.sha256" in message and "'url'" in message


def test_url_source_bad_sha256():
    message = error_of({"dataset": {"source": {"type": "url", "url": "https://example.org/d.zip", "sha256": "abc"}}})
    assert "dataset.source.sha256" in message and "'abc'" in message


def test_url_source_needs_http():
    message = error_of({"dataset": {"source": {"type": "url", "url": "ftp://example.org/d.zip", "sha256": "a" * 64}}})
    assert "dataset.source.url" in message and "ftp://example.org/d.zip" in message


def test_url_source_complete_is_fine():
    validate({"dataset": {"source": {"type": "url", "url": "https://example.org/d.zip", "sha256": "A" * 64}}})


def test_path_source_without_path():
    message = error_of({"dataset": {"source": {"type": "path"}}})
    assert "dataset.source.path" in message


def test_csv_layout_without_table():
    message = error_of({"dataset": {"layout": {"type": "csv"}}})
    assert "dataset.layout.table" in message


def test_class_folders_regex_without_named_group():
    regex = r"_(\d+)$"
    message = error_of({"dataset": {"layout": {"type": "class_folders", "group_regex": regex}}})
    assert "dataset.layout.group_regex" in message and repr(regex) in message
    assert "group" in message


def test_class_folders_regex_with_named_group_is_fine():
    validate({"dataset": {"layout": {"type": "class_folders", "group_regex": r"^(?P<group>\d+)_"}}})


def test_class_folders_invalid_regex():
    regex = "_(?P<group>[^_]+$"  # unbalanced parenthesis
    message = error_of({"dataset": {"layout": {"type": "class_folders", "group_regex": regex}}})
    assert "dataset.layout.group_regex" in message


def test_bad_dataset_name():
    message = error_of({"dataset": {"name": "my data"}})
    assert "dataset.name" in message and "'my data'" in message


def test_every_error_is_a_config_error_and_value_error():
    with pytest.raises(ValueError):
        validate({"shards": "four"})
    message = error_of({"shards": "four"})
    assert "shards" in message and "'four'" in message


def test_every_schema_error_is_listed_at_once():
    message = error_of({"seed": -1, "crop_filter": {"margin": -3, "target_sise": 64}})
    assert "config key seed: -1" in message and "config key crop_filter.margin: -3" in message
    assert "'target_sise'" in message


def test_section_that_is_not_a_mapping():
    message = error_of({"crop_filter": 64})
    assert "config key crop_filter: 64 is not of type 'object'" in message


def test_list_items_do_not_share_filled_in_defaults():
    experiment = {"input": "hr", "backbone": "dcnn"}
    config = validate({"classify": {"experiments": [dict(experiment, name="a"), dict(experiment, name="b")]}})
    first, second = config["classify"]["experiments"]
    first["backbone_options"]["width"] = 0.5
    assert second["backbone_options"] == {}


def test_keys_come_out_sorted_whatever_the_order_written():
    config = validate({"split": {"fractions": {"val": 0.2, "train": 0.6, "test": 0.2}}, "seed": 1})
    assert list(config) == sorted(config)
    assert list(config["split"]["fractions"]) == ["test", "train", "val"]


def test_schema_is_of_the_draft_snakemake_validates_with():
    # snakemake.utils.validate always uses Draft 2020-12 and warns on every run about any other $schema
    assert SCHEMA["$schema"] == jsonschema.Draft202012Validator.META_SCHEMA["$schema"]


def test_backbones_get_their_cpu_size_and_measured_fixes_where_the_config_is_silent():
    from karyosr.classify.recipes import BACKBONE_DEFAULTS

    experiments = [{"name": "r50", "input": "hr", "backbone": "resnet50"},
                   {"name": "r50_published", "input": "hr", "backbone": "resnet50", "backbone_options": {"width": 1.0}},
                   {"name": "plain", "input": "hr", "backbone": "plain_cnn", "epochs": 7}]
    config = validate({"classify": {"experiments": experiments}})
    r50, published, plain = config["classify"]["experiments"]
    assert r50["backbone_options"] == {"width": 0.25, "zero_init_residual": True}
    # a given option wins, the others still come from the backbone's defaults
    assert published["backbone_options"] == {"width": 1.0, "zero_init_residual": True}
    assert plain["backbone_options"] == {} and plain["epochs"] == 7
    # every backbone the schema allows has an entry, and only schema keys are set
    schema = load_schema()
    experiment_schema = schema["properties"]["classify"]["properties"]["experiments"]["items"]
    assert set(BACKBONE_DEFAULTS) == set(experiment_schema["properties"]["backbone"]["enum"])
    assert all(set(d) <= set(experiment_schema["properties"]) for d in BACKBONE_DEFAULTS.values())


def test_lists_the_schema_holds_match_the_code_that_implements_them():
    """The schema is the one source of the config's lists: every SR architecture it allows is in
    the registry and back, and every interpolation method it allows runs."""
    import numpy as np

    from karyosr.sr import archs
    from karyosr.sr.upscale import upscale

    assert set(config.SR_ARCHS) == set(archs.ARCHS)
    lr = np.full((6, 5), 200, np.uint8)
    for method in config.INTERPOLATION_METHODS:
        assert upscale(lr, 2, method, {"amount": 0.5, "sigma": 1.0}).shape == (12, 10)


def test_the_schema_ships_inside_the_package():
    assert config.SCHEMA_PATH.is_file()
    assert Path(config.__file__).parent in config.SCHEMA_PATH.parents


@pytest.mark.parametrize("given, message", [
    ({"sr": {"models": [{"name": "rrdb", "arch": "esrgan"}]}},
     "sr.models.0.arch: 'esrgan' is now 'rrdbnet'"),
    ({"sr": {"models": [{"name": "r", "arch": "srresnet", "options": {"num_blocks": 4, "num_features": 32}}]}},
     "sr.models.0.options.num_blocks: srresnet now calls this option 'num_block'"),
    ({"sr": {"models": [{"name": "f", "arch": "srfbn", "options": {"num_steps": 2}}]}},
     "sr.models.0.options.num_steps: srfbn now calls this option 'num_step'"),
    ({"sr": {"models": [{"name": "u", "arch": "unet_sharpen", "options": {"base_channels": 8}}]}},
     "sr.models.0.options.base_channels: unet_sharpen now calls this option 'num_feat'"),
    ({"classify": {"experiments": [{"name": "s", "input": "super:esrgan:x4_bicubic"}]}},
     "write 'super:rrdbnet:x4_bicubic'"),
    ({"classify": {"experiments": [{"name": "s", "input": "super:srresnet:x4_bicubic",
                                    "sr_options": {"num_features": 8}}]}},
     "classify.experiments.0.sr_options.num_features: srresnet now calls this option 'num_feat'"),
])
def test_old_names_are_errors_that_name_the_new_one(given, message):
    """No silent aliases: a config written for an earlier version stops with the name to use."""
    with pytest.raises(ConfigError) as error:
        validate(given)
    assert message in str(error.value)


def test_a_gan_fine_tuning_keeps_the_network_of_the_model_it_starts_from():
    models = validate({"sr": {"models": [
        {"name": "rrdb", "arch": "rrdbnet", "options": {"num_feat": 16, "num_block": 2}},
        {"name": "esrgan", "arch": "rrdbnet", "init_from_model": "rrdb", "gan": {"type": "ragan", "weight": 0.005}},
    ]}})["sr"]["models"]
    assert models[1]["options"] == models[0]["options"]


def test_an_sr_model_trained_from_scratch_gets_its_architectures_cpu_recipe():
    from karyosr.sr.recipes import ARCH_DEFAULTS

    models = validate({"sr": {"models": [
        {"name": "plain", "arch": "srresnet"},
        {"name": "mine", "arch": "srresnet", "lr": 0.0005, "options": {"num_block": 2}},
        {"name": "published", "arch": "srresnet", "init_from": "weights.pth"},
    ]}})["sr"]["models"]
    defaults = ARCH_DEFAULTS["srresnet"]
    assert models[0]["options"] == defaults["options"] and models[0]["lr"] == defaults["lr"]
    # given keys win; options merge key by key
    assert models[1]["lr"] == 0.0005
    assert models[1]["options"] == {**defaults["options"], "num_block": 2}
    # a model started from a weights file keeps the network and input those weights expect
    assert models[2]["options"] == {} and models[2]["lr"] == load_schema()["properties"]["sr"]["properties"][
        "models"]["items"]["properties"]["lr"]["default"]


def test_every_sr_architecture_has_a_recipe():
    from karyosr.sr.recipes import ARCH_DEFAULTS

    assert set(ARCH_DEFAULTS) == set(config.SR_ARCHS)


def test_the_old_whole_image_section_name_is_an_error_naming_the_new_one():
    with pytest.raises(ConfigError, match=r"config key enhance: renamed 'whole' \(whole.max_pixels\)"):
        validate({"enhance": {"max_pixels": 10_000}})


def test_sr_inference_tiles_can_be_sized_automatically():
    assert validate({"sr": {"tile": "auto"}})["sr"]["tile"] == "auto"
    assert "sr.tile" in error_of({"sr": {"tile": "big"}})
