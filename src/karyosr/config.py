"""Config validation: the JSON schema's defaults and checks, plus the rules no schema can express."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate as snakemake_validate

from karyosr import renames
from karyosr.classify import recipes
from karyosr.classify.input_keys import parse_input
from karyosr.sr import recipes as sr_recipes

# Shipped inside the package, so an installed karyosr validates configs as a checkout does.
SCHEMA_PATH = Path(__file__).with_name("schemas") / "config.schema.yaml"


class ConfigError(ValueError):
    """A config key or value the workflow cannot run with; the message names the key."""


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _schema_enum(schema: dict, *path: str) -> tuple[str, ...]:
    """The allowed values the schema lists at ``path`` (property names, then "items" for a list)."""
    node = schema
    for key in path:
        node = node[key] if key == "items" else node["properties"][key]
    return tuple(node["enum"])


# Lists the checks below need, read from the schema so that it stays their one source (the SR
# architecture registry and the interpolation code are checked against it by tests/test_config.py).
_SCHEMA = load_schema()
SR_ARCHS = _schema_enum(_SCHEMA, "sr", "models", "items", "arch")
INTERPOLATION_METHODS = _schema_enum(_SCHEMA, "upscale", "methods", "items")
# dataset.layout types of unlabelled whole images (ingested at native size; crop_filter does not apply).
WHOLE_IMAGE_LAYOUTS = ("images", "magnification_series")


SR_RUN_KEYS = ("device", "bf16", "compile", "tile", "tile_overlap", "infer_batch_size")


def sr_run_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The run-wide SR settings of a validated config (training and inference)."""
    return {k: config["sr"][k] for k in SR_RUN_KEYS}


def sr_model_settings(config: dict[str, Any], name: str) -> dict[str, Any]:
    """One SR model's config slice as train_sr receives it: the model's keys plus the run-wide
    settings training depends on (not the inference tiling, so changing it does not retrain)."""
    model = next(m for m in config["sr"]["models"] if m["name"] == name)
    return {**model, **{k: v for k, v in sr_run_settings(config).items() if k not in ("tile", "tile_overlap")}}


def validate(config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Fill the schema's defaults into ``config``, check it, and return it (the same dict, every
    mapping's keys sorted: see _canonical).

    The schema is applied by Snakemake's own validate(set_default=True), in the workflow and in
    the benchmarks and commands alike (Snakemake is a dependency of the package). Raises
    ConfigError naming the key, the offending value and what is allowed.
    """
    given_experiments = _given_keys(config, "classify", "experiments")
    given_models = _given_keys(config, "sr", "models")
    _check_old_names(config)
    try:
        snakemake_validate(config, str(schema_path), set_default=True)
    except WorkflowError:
        # Snakemake stops at the first error and prints it with a dump of the schema; list every
        # error by its key path instead, so that one edit of the config file fixes them all.
        raise ConfigError(_schema_errors(config, load_schema(schema_path))) from None
    experiments = config["classify"]["experiments"]
    experiments[:] = [recipes.with_backbone_defaults(e, keys) for e, keys in zip(experiments, given_experiments)]
    config["sr"]["models"] = sr_recipes.with_arch_defaults(config["sr"]["models"], given_models)
    canonical = _canonical(config)
    config.clear()
    config.update(canonical)
    for check in SECTION_CHECKS:
        check(config)
    return config


def _check_old_names(config: dict[str, Any]) -> None:
    """Architecture and option names of earlier versions (karyosr.renames), each reported with the
    name to write instead, before the schema would reject them without saying so."""
    errors = []
    for old, new in renames.SECTIONS.items():
        if old in config:
            keys = list(config[old]) if isinstance(config[old], dict) else []
            errors.append(f"config key {old}: renamed {new!r}"
                          + (f" ({', '.join(f'{new}.{key}' for key in keys)})" if keys else ""))

    def options(key: str, arch: str, given: Any) -> None:
        if isinstance(given, dict):
            errors.extend(f"config key {key}.{old}: {arch} now calls this option {new!r} (BasicSR's name)"
                          for old, new in renames.old_options(arch, given).items())

    sr = config.get("sr") if isinstance(config.get("sr"), dict) else {}
    for i, model in enumerate(sr.get("models") or []):
        if not isinstance(model, dict):
            continue
        arch = model.get("arch")
        if isinstance(arch, str) and renames.arch_error(arch):
            errors.append(f"config key sr.models.{i}.arch: {renames.arch_error(arch)}")
        options(f"sr.models.{i}.options", renames.current_arch(str(arch)), model.get("options"))
    classify = config.get("classify") if isinstance(config.get("classify"), dict) else {}
    for i, experiment in enumerate(classify.get("experiments") or []):
        if not isinstance(experiment, dict) or not str(experiment.get("input", "")).startswith("super:"):
            continue
        parts = str(experiment["input"]).split(":")
        if len(parts) == 3 and renames.arch_error(parts[1]):
            errors.append(f"config key classify.experiments.{i}.input: {experiment['input']!r}: "
                          f"{renames.arch_error(parts[1])}; write {renames.upgrade_input(experiment['input'])!r}")
        if len(parts) == 3:
            options(f"classify.experiments.{i}.sr_options", renames.current_arch(parts[1]), experiment.get("sr_options"))
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))


def _given_keys(config: dict[str, Any], section: str, entries: str) -> list[set[str]]:
    """The keys each entry of ``config[section][entries]`` (classify experiments, SR models) gives
    itself, before the schema fills in defaults: a backbone's or an architecture's own defaults
    apply only where the config is silent."""
    block = config.get(section)
    items = block.get(entries) if isinstance(block, dict) else None
    if not isinstance(items, list):
        return []
    return [set(e) if isinstance(e, dict) else set() for e in items]


def _schema_errors(config: dict[str, Any], schema: dict) -> str:
    errors = jsonschema.Draft202012Validator(schema).iter_errors(config)
    lines = sorted(f"config key {_key(e)}: {e.message}" for e in errors)
    return "invalid config:\n  " + "\n  ".join(lines)


def _key(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _canonical(value: Any) -> Any:
    """``value`` rebuilt with every mapping's keys sorted and no dict or list in two places.

    Snakemake compares params by their repr, which follows dict order, and a merged config's
    order follows whichever file set a key last: the same config written in another order would
    rerun everything. And Snakemake's validate fills one and the same default object into every
    list item that lacks the key (every model's options, say): rebuilt, changing one item's
    value cannot change another's.
    """
    if isinstance(value, dict):
        return {key: _canonical(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def _check_dataset(config: dict[str, Any]) -> None:
    source = config["dataset"]["source"]
    required = {"url": ["url", "sha256"], "path": ["path"], "synthetic": [], "metaphase": [], "photos": []}[source["type"]]
    for key in required:
        if not source.get(key):
            raise ConfigError(
                f"config key dataset.source.{key} is required when dataset.source.type is "
                f"{source['type']!r}"
            )
    if source["type"] == "url" and not source["url"].startswith(("http://", "https://")):
        raise ConfigError(f"config key dataset.source.url: {source['url']!r} must start with http:// or https://")
    layout = config["dataset"]["layout"]
    if layout["type"] == "csv" and not layout.get("table"):
        raise ConfigError("config key dataset.layout.table is required when dataset.layout.type is 'csv'")
    if layout["group"] == "folder" and (layout["type"] != "images" or layout.get("table")):
        raise ConfigError(
            "config key dataset.layout.group: 'folder' (the split group is the folder an image is in) applies to "
            f"dataset.layout.type images without a table only, not to {layout['type']!r}"
            + (" with a table (its group column is the group)" if layout.get("table") else "")
        )
    images_by_regex = layout["type"] == "images" and not layout.get("table") and layout["group"] == "regex"
    if layout["type"] == "class_folders" or images_by_regex:
        try:
            pattern = re.compile(layout["group_regex"])
        except re.error as exc:
            raise ConfigError(f"config key dataset.layout.group_regex: {layout['group_regex']!r} is not a valid regex: {exc}")
        if "group" not in pattern.groupindex:
            raise ConfigError(
                f"config key dataset.layout.group_regex: {layout['group_regex']!r} needs a named group "
                "'(?P<group>...)' that extracts the split group from the "
                + ("path relative to the dataset folder" if images_by_regex else "file name")
            )


def _check_metrics(config: dict[str, Any]) -> None:
    if config["metrics"]["niqe_patch_size"] % 2:
        raise ConfigError(f"config key metrics.niqe_patch_size: {config['metrics']['niqe_patch_size']} must be even")
    if config["metrics"]["ssim_window"] % 2 == 0:
        raise ConfigError(f"config key metrics.ssim_window: {config['metrics']['ssim_window']} must be odd")


def _check_split(config: dict[str, Any]) -> None:
    fractions = config["split"]["fractions"]
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"config key split.fractions: fractions {fractions} sum to {total:g}, expected 1")


def _check_degrade(config: dict[str, Any]) -> None:
    layout = config["dataset"]["layout"]["type"]
    # The HR images synthetic profiles degrade: crop_filter's squares, or the tiles of whole images.
    size_key = "tiles.size" if layout == "images" else "crop_filter.target_size"
    size = config["tiles"]["size"] if layout == "images" else config["crop_filter"]["target_size"]
    names = profile_names(config)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"config key degrade.profiles: profile name(s) {repeated} appear more than once")
    for i, profile in enumerate(config["degrade"]["profiles"]):
        key, name = f"degrade.profiles.{i}", profile["name"]
        if profile["paired"] and layout != "magnification_series":
            raise ConfigError(
                f"config key {key}.paired: profile {name!r} is paired (real LR/HR pairs from "
                f"registered magnification series), which needs dataset.layout.type magnification_series, "
                f"not {layout!r}; for synthetic LR made from your images drop paired: true"
            )
        if layout == "magnification_series" and not profile["paired"]:
            raise ConfigError(
                f"config key {key}: profile {name!r} is a synthetic degradation; a "
                f"magnification_series trains on its registered pairs (paired: true profiles). For synthetic "
                f"LR made from whole images use dataset.layout.type images"
            )
        if profile["paired"]:
            continue
        if size % profile["scale"]:
            raise ConfigError(
                f"config key {key}.scale: profile {name!r} has scale {profile['scale']}, which does "
                f"not divide {size_key} {size}; choose a size that every scale divides"
            )
        for option in ("blur_sigma", "noise_sigma", "jpeg_quality", "contrast_loss"):
            value = profile.get(option)
            if isinstance(value, list) and value[0] > value[1]:
                raise ConfigError(f"config key {key}.{option}: profile {name!r} has range {value} with low > high")
        loss = profile["contrast_loss"]
        if max(loss if isinstance(loss, list) else [loss]) >= 1:
            raise ConfigError(f"config key {key}.contrast_loss: profile {name!r} has {loss}; "
                              "expected a fraction below 1 (1 would leave a flat image)")


def _check_sr(config: dict[str, Any]) -> None:
    sr, names = config["sr"], profile_names(config)
    layout = config["dataset"]["layout"]["type"]
    unknown = [p for p in sr["profiles"] if p not in names]
    if unknown and sr["models"]:
        raise ConfigError(f"config key sr.profiles: {unknown} are not degradation profiles (have {names})")
    seen: dict[str, dict] = {}
    for i, model in enumerate(sr["models"]):
        key = f"sr.models.{i}"
        if model["name"] in seen or model["name"] in INTERPOLATION_METHODS:
            raise ConfigError(f"config key {key}.name: {model['name']!r} is already used by another method")
        source = model["init_from_model"]
        if source is not None and (source not in seen or seen[source]["arch"] != model["arch"]):
            raise ConfigError(
                f"config key {key}.init_from_model: {source!r} must name an earlier model of sr.models "
                f"with the same arch ({model['arch']})"
            )
        perceptual = model["perceptual"] if model["perceptual_weight"] > 0 else None
        if perceptual and perceptual["network"] == "pipeline_features" and layout in WHOLE_IMAGE_LAYOUTS:
            raise ConfigError(f"config key {key}.perceptual.network: pipeline_features is trained on chromosome "
                              f"classes, which the {layout!r} layout does not have; use vgg19 with its weights file")
        if perceptual and perceptual["network"] == "vgg19" and not perceptual["weights"]:
            raise ConfigError(f"config key {key}.perceptual.weights: vgg19 needs a torchvision-format VGG19 state dict file")
        seen[model["name"]] = model


def _check_classify(config: dict[str, Any]) -> None:
    experiments, names = config["classify"]["experiments"], profile_names(config)
    sr = config["sr"]
    layout = config["dataset"]["layout"]["type"]
    if layout in WHOLE_IMAGE_LAYOUTS and experiments:
        raise ConfigError(f"config key classify.experiments: the {layout!r} layout holds unlabelled whole "
                          "images, which cannot train classifiers; set classify.experiments to []")
    sr_models = {m["name"] for m in sr["models"]}
    names_seen = set()
    for i, experiment in enumerate(experiments):
        key = f"classify.experiments.{i}"
        if experiment["name"] in names_seen:
            raise ConfigError(f"config key {key}.name: {experiment['name']!r} is used twice")
        names_seen.add(experiment["name"])
        source = parse_input(experiment["input"])  # well-formed: the schema's pattern checked it
        profile = source.get("profile")
        if profile is not None and profile not in names:
            raise ConfigError(f"config key {key}.input: {experiment['input']!r} names profile {profile!r}, "
                              f"not one of degrade.profiles {names}")
        if source["kind"] == "sr" and (source["model"] not in sr_models or profile not in sr["profiles"]):
            raise ConfigError(f"config key {key}.input: {experiment['input']!r} needs sr.models to have "
                              f"{source['model']!r} and sr.profiles to include {profile!r}")
        if source["kind"] == "super" and source["arch"] not in SR_ARCHS:
            raise ConfigError(f"config key {key}.input: {source['arch']!r} is not an SR architecture for super: "
                              f"inputs ({', '.join(SR_ARCHS)})")


def profile_names(config: dict[str, Any]) -> list[str]:
    return [p["name"] for p in config["degrade"]["profiles"]]


def _check_ensembles(config: dict[str, Any]) -> None:
    """Every ensemble averages named experiments, under a name no experiment has; one member is an
    ensemble only over its seeds."""
    classify = config["classify"]
    experiments = [e["name"] for e in classify["experiments"]]
    seen = set(experiments)
    for i, ensemble in enumerate(classify["ensembles"]):
        key = f"classify.ensembles.{i}"
        if ensemble["name"] in seen:
            raise ConfigError(f"config key {key}.name: {ensemble['name']!r} is already the name of an experiment or "
                              "ensemble")
        seen.add(ensemble["name"])
        unknown = [m for m in ensemble["members"] if m not in experiments]
        if unknown:
            raise ConfigError(f"config key {key}.members: {unknown} are not classify.experiments (have {experiments})")
        if len(set(ensemble["members"])) < 2 and not ensemble["over_seeds"]:
            raise ConfigError(f"config key {key}.members: one experiment ({ensemble['members']}) averages nothing "
                              "unless over_seeds is true (its seeds' runs averaged); name two or more")


# The cross-checks no schema can express, one per config section, in the order a reader meets them.
SECTION_CHECKS = (_check_dataset, _check_metrics, _check_split, _check_degrade, _check_sr, _check_classify,
                  _check_ensembles)
