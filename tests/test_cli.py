"""Model files and the ``karyosr`` command line.

Tiny models are trained for a few steps by the workflow's own training functions (so the model
files are the ones the rules write), then used through the console script in subprocesses on
image files written here: 8- and 16-bit PNG / TIFF, BMP, JPEG, a corrupt file, a missing model.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import yaml

from karyosr import cli, config, model_file
from karyosr.classify import predict, supernet, train
from karyosr.classify.inputs import prepare_input
from karyosr.io import shards
from karyosr.labels import CLASS_NAMES
from karyosr.sr import archs, features, infer as sr_infer, train as sr_train

REPO = Path(__file__).resolve().parents[1]
SIZE, SCALE = 32, 2
PROFILE = {"name": "x2_test", "scale": SCALE, "kernel": "area"}


def run_cli(*args, check_rc: int | None = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "karyosr.cli", *map(str, args)], capture_output=True, text=True,
                            env=env, timeout=120)
    if check_rc is not None:
        assert result.returncode == check_rc, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def banded_rod(label: int, rng, size: int = SIZE, dtype=np.uint8) -> np.ndarray:
    """A dark rod on white whose band spacing and length depend on the class."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    angle = rng.uniform(-0.3, 0.3)
    u = (yy - size / 2) * np.cos(angle) + (xx - size / 2) * np.sin(angle)
    v = -(yy - size / 2) * np.sin(angle) + (xx - size / 2) * np.cos(angle)
    inside = (np.abs(u) < size * (0.2 + 0.05 * label)) & (np.abs(v) < 3)
    bands = 0.5 + 0.5 * np.sin(u * (0.6 + 0.5 * label))
    image = np.where(inside, 60 + 120 * bands, 235).astype(np.float32)
    image = cv2.GaussianBlur(image, (0, 0), 0.7) + rng.normal(0, 2, image.shape)
    scale = 257 if dtype == np.uint16 else 1
    return np.clip(np.rint(image * scale), 0, np.iinfo(dtype).max).astype(dtype)


def validated(**sections) -> dict:
    base = yaml.safe_load((REPO / "config/config.yaml").read_text())
    return config.validate({**base, **sections})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Model files of every kind, written by the training functions the rules call."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    n = 36
    labels = np.arange(n) % 4
    hr = [banded_rod(int(k), rng) for k in labels]
    lr = [cv2.resize(im, (SIZE // SCALE, SIZE // SCALE), interpolation=cv2.INTER_AREA) for im in hr]
    ids = [f"img{i:03d}" for i in range(n)]
    split = np.array(["train", "val", "test"])[np.arange(n) % 3]
    meta = pd.DataFrame({"image_id": ids, "label": pd.array(labels, dtype="Int8"), "split": split,
                         "group": [f"cell{i % 6}" for i in range(n)]})
    box = {"crop_y0": 0, "crop_y1": SIZE, "crop_x0": 0, "crop_x1": SIZE, "crop_scale": 1.0, "pad_top": 0,
           "pad_left": 0}
    shards.write_shard(root / "hr.parquet", meta.assign(**box), hr)
    shards.write_shard(root / "lr.parquet", meta.assign(scale=SCALE, dataset="test", profile=PROFILE["name"],
                                                        class_name=[CLASS_NAMES[k] for k in labels]), lr)
    shards.write_table(root / "split.parquet", meta[["image_id", "split", "group"]])
    cfg = validated(
        crop_filter={"target_size": SIZE},
        degrade={"profiles": [PROFILE]},
        sr={"profiles": [PROFILE["name"]], "device": "cpu", "models": [{"name": "tiny_srcnn", "arch": "srcnn", "epochs": 2, "steps_per_epoch": 2,
                                         "batch_size": 4, "patch_size": 16,
                                         "options": {"channels": [8, 4], "kernels": [5, 3, 3],
                                                     "input_shift": "auto"}}],
            "features": {"channels": [4, 8], "epochs": 1, "steps_per_epoch": 2, "batch_size": 4}},
        classify={"device": "cpu", "experiments": [
            {"name": "dcnn_hr", "input": "hr", "backbone": "dcnn", "backbone_options": {"width": 0.125},
             "balance": "none", "epochs": 1, "steps_per_epoch": 2, "batch_size": 8},
            {"name": "super_dcnn", "input": f"super:srcnn:{PROFILE['name']}", "backbone": "dcnn",
             "backbone_options": {"width": 0.125}, "sr_options": {"channels": [4, 4]}, "balance": "none",
             "epochs": 1, "steps_per_epoch": 2, "batch_size": 8}]},
    )
    crop = cfg["crop_filter"]
    paths = {"sr": root / "sr/model.safetensors", "features": root / "features/model.safetensors"}
    sr_train.run([root / "hr.parquet"], [root / "lr.parquet"], config.sr_model_settings(cfg, "tiny_srcnn"), 0,
                 paths["sr"], root / "sr/history.parquet", root / "sr/checkpoints", profile=PROFILE, crop=crop)
    features.run([root / "hr.parquet"], root / "split.parquet", {**cfg["sr"]["features"], "device": "cpu"}, 0,
                 paths["features"], root / "features/checkpoints", crop=crop)
    for experiment in cfg["classify"]["experiments"]:
        name = experiment["name"]
        is_super = experiment["input"] != "hr"
        balanced = root / f"{name}/balanced.parquet"
        train_meta = meta[meta["split"] == "train"]
        images = lr if is_super else hr
        shards.write_shard(balanced, train_meta.assign(synthetic=False),
                           [images[i] for i in train_meta.index])
        paths[name] = root / f"{name}/model.safetensors"
        train.run_train(balanced, [root / ("lr.parquet" if is_super else "hr.parquet")], root / "split.parquet",
                        {**experiment, "device": "cpu", "bf16": False}, 0, paths[name],
                        root / f"{name}/history.parquet", root / f"{name}/checkpoints", crop=crop,
                        profile=PROFILE if is_super else None)
    return {"paths": paths, "root": root, "lr": lr, "hr": hr, "ids": ids, "split": split, "crop": crop}


# --------------------------------------------------------------------------- model files


def test_sr_model_file_round_trip(trained):
    path = trained["paths"]["sr"]
    assert model_file.is_safetensors(path)
    meta = model_file.read_metadata(path)
    assert meta["format"] == "karyosr-model" and meta["kind"] == "sr" and meta["name"] == "tiny_srcnn"
    assert meta["arch"] == "srcnn" and meta["scale"] == SCALE and meta["input_channels"] == 1
    assert meta["bit_depth"] == 8 and meta["peak"] == 255.0
    # input_shift 'auto' is stored resolved: the LR training images' mean grey.
    assert 0.5 < meta["options"]["input_shift"] < 1
    assert meta["profile"] == PROFILE and meta["crop"] == trained["crop"]
    assert meta["crop"]["polarity"] == "auto" and meta["crop"]["threshold"] == "otsu"
    assert meta["best_epoch"] in (1, 2) and set(meta["validation"]) == {"val_psnr", "val_ssim"}
    assert len(meta["config_hash"]) == 16 and meta["karyosr_version"]
    # The domain: statistics of the LR training images (the model's inputs).
    trained_on = meta["domain"]
    assert trained_on["image_count"] == 12 and trained_on["bit_depth"] == 8
    assert trained_on["polarity"] == "dark_on_light" and trained_on["polarity_share"] == 1.0
    assert abs(trained_on["mean_grey"] - meta["options"]["input_shift"]) < 0.02
    assert trained_on["mean_grey_p05"] <= trained_on["mean_grey"] <= trained_on["mean_grey_p95"]
    assert trained_on["dataset"] is None and trained_on["pixel_size_um"] is None  # no such HR columns here
    model, loaded_meta = sr_infer.load_model(path)
    assert loaded_meta == meta
    state = model_file.load(path).state_dict
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # init_from (archs.load_weights) reads the same file.
    fresh = archs.build_sr("srcnn", SCALE, channels=[8, 4], kernels=[5, 3, 3])
    archs.load_weights(fresh, path)
    assert all(torch.equal(state[k], v) for k, v in fresh.state_dict().items())


@pytest.mark.parametrize("name", ["dcnn_hr", "super_dcnn"])
def test_classifier_model_file_round_trip(trained, name):
    path = trained["paths"][name]
    meta = model_file.read_metadata(path)
    assert meta["kind"] == "classifier" and meta["name"] == name and meta["backbone"] == "dcnn"
    assert meta["class_names"] == list(CLASS_NAMES) and meta["crop"] == trained["crop"]
    assert meta["tta"] is False and set(meta["validation"]) == {"val_accuracy"}
    assert meta["domain"]["image_count"] == 12 and meta["domain"]["polarity"] == "dark_on_light"
    assert meta["domain"]["dataset"] is None
    if name == "super_dcnn":
        assert meta["input"] == f"super:srcnn:{PROFILE['name']}" and meta["scale"] == SCALE
        assert meta["input_size"] == [SIZE // SCALE] * 2 and meta["profile"] == PROFILE
        assert "SRCNN" in meta["description"]
    else:
        assert meta["input"] == "hr" and meta["scale"] is None and meta["input_size"] == [SIZE, SIZE]
        assert meta["profile"] is None
    model, _ = predict.load_classifier(path)
    assert isinstance(model, supernet.SuperNetwork) == (name == "super_dcnn")
    state = model_file.load(path).state_dict
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_feature_network_model_file_round_trip(trained):
    path = trained["paths"]["features"]
    meta = model_file.read_metadata(path)
    assert meta["kind"] == "features" and meta["channels"] == [4, 8] and meta["num_classes"] == 24
    assert set(meta["validation"]) == {"val_accuracy"}
    loss = sr_train.build_perceptual({"network": "pipeline_features"}, str(path))
    state = model_file.load(path).state_dict
    assert all(torch.equal(state[k], v) for k, v in loss.features.net.state_dict().items())


def test_wrong_kind_bare_and_corrupt_files_are_named(trained, tmp_path):
    with pytest.raises(ValueError, match=r"is a 'classifier' model file, not a 'sr' one"):
        sr_infer.load_model(trained["paths"]["dcnn_hr"])
    bare = tmp_path / "bare.safetensors"
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, bare)
    assert model_file.read_metadata(bare) == {}
    with pytest.raises(ValueError, match=f"{bare}: no karyosr metadata"):
        predict.load_classifier(bare)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(trained["paths"]["sr"].read_bytes()[:200])
    with pytest.raises(ValueError, match=str(broken)):
        model_file.load(broken)
    legacy = tmp_path / "classifier.pt"
    torch.save({"best_epoch": 1, "state_dict": model_file.load(trained["paths"]["dcnn_hr"]).state_dict}, legacy)
    assert model_file.read_metadata(legacy) == {"legacy": True, "best_epoch": 1, "kind": "classifier"}
    with pytest.raises(ValueError, match=f"{legacy}: a classifier file without its architecture"):
        predict.load_classifier(legacy)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        model_file.load(tmp_path / "missing.safetensors")


def test_legacy_pt_sr_model_still_loads(trained, tmp_path):
    """An SR model.pt written before model files carried metadata (a weights-only payload)."""
    loaded = model_file.load(trained["paths"]["sr"])
    meta = loaded.metadata
    legacy = tmp_path / "model.pt"
    torch.save({"arch": meta["arch"], "scale": meta["scale"], "options": meta["options"], "description": "x",
                "best_epoch": 1, "state_dict": loaded.state_dict}, legacy)
    model, legacy_meta = sr_infer.load_model(legacy)
    assert legacy_meta["legacy"] is True and legacy_meta["kind"] == "sr" and legacy_meta["scale"] == SCALE
    assert all(torch.equal(loaded.state_dict[k], v) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------- command line


def test_help_everywhere_is_fast_and_imports_no_torch():
    for args in ([], ["enhance"], ["classify"], ["info"], ["quality"]):
        result = run_cli(*args, "--help")
        assert "usage: karyosr" in result.stdout
    probe = subprocess.run([sys.executable, "-c", "import sys; from karyosr import cli; cli.build_parser(); "
                            "print('torch' in sys.modules)"], capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "False"
    if shutil.which("karyosr"):  # the console script of an installed package
        assert "enhance" in subprocess.run(["karyosr", "--help"], capture_output=True, text=True).stdout


def test_info_prints_the_metadata(trained):
    result = run_cli("info", trained["paths"]["super_dcnn"])
    assert "kind" in result.stdout and "super:srcnn:x2_test" in result.stdout and "val_accuracy" in result.stdout
    as_json = json.loads(run_cli("info", "--json", trained["paths"]["sr"]).stdout)
    assert as_json == model_file.read_metadata(trained["paths"]["sr"])
    missing = run_cli("info", "nowhere/model.safetensors", check_rc=2)
    assert "model file not found: nowhere/model.safetensors" in missing.stderr


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def test_enhance_files_and_folders_keeps_bit_depth_and_reports_bad_files(trained, tmp_path):
    rng = np.random.default_rng(1)
    lr8 = cv2.resize(banded_rod(2, rng, 40), (20, 20), interpolation=cv2.INTER_AREA)
    lr16 = lr8.astype(np.uint16) * 257 + rng.integers(0, 200, lr8.shape).astype(np.uint16)
    inputs = tmp_path / "in"
    files = {"a.png": lr8, "b16.png": lr16, "c16.tif": lr16, "d.bmp": lr8, "e.jpg": lr8}
    for name, image in files.items():
        _write(inputs / "cell" / name, image)
    (inputs / "cell" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (inputs / "cell" / "notes.txt").write_text("ignored: not an image name")
    single = _write(tmp_path / "single.tiff", lr8)
    before = {p: p.read_bytes() for p in inputs.rglob("*")  if p.is_file()}
    out = tmp_path / "out"
    # Tiles of 8 LR pixels with 12 of context (the blend uses the inner 6, more than SRCNN's 5-pixel
    # reach): the pixels of whole images, 16-bit ones within a grey level (test_tiles_join_seamlessly).
    result = run_cli("enhance", trained["paths"]["sr"], inputs / "cell", single, tmp_path / "missing.png", "-o", out,
                     "--tile", 8, "--overlap", 12, "--batch-size", 2, check_rc=1)
    assert "corrupt.png: cannot decode" in result.stderr
    assert "missing.png: no such file or folder" in result.stderr
    assert "6 image(s) enhanced x2" in result.stderr
    model, _ = sr_infer.load_model(trained["paths"]["sr"])
    for name, image in files.items():
        stem, extension = name.split(".")
        target = out / "cell" / f"{stem}_tiny_srcnn_x2.{'png' if extension == 'jpg' else extension}"
        written = cv2.imread(str(target), cv2.IMREAD_UNCHANGED)
        assert written.dtype == image.dtype and written.shape == (40, 40), name
        source = image if name != "e.jpg" else cv2.imread(str(inputs / "cell/e.jpg"), cv2.IMREAD_UNCHANGED)
        peak = 65535.0 if image.dtype == np.uint16 else 255.0
        tiled = sr_infer.predict_tiled(model, source[None], SCALE, peak, torch.device("cpu"), 8, overlap=12)[0]
        np.testing.assert_array_equal(written, tiled, err_msg=name)
        # tiles blended in float32 round a 16-bit value at k + 0.5 either way: within a grey level
        whole = sr_infer.predict_tiled(model, source[None], SCALE, peak, torch.device("cpu"), 0)[0]
        assert np.abs(written.astype(int) - whole.astype(int)).max() <= (1 if image.dtype == np.uint16 else 0), name
    assert cv2.imread(str(out / "single_tiny_srcnn_x2.tiff"), cv2.IMREAD_UNCHANGED).shape == (40, 40)
    assert {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()} == before
    # Writing into the input folder would replace the inputs: refused file by file.
    single_bytes = single.read_bytes()
    same = run_cli("enhance", trained["paths"]["sr"], single, "-o", tmp_path, "--suffix", "", check_rc=1)
    assert "would overwrite an input file" in same.stderr and single.read_bytes() == single_bytes


def test_enhance_missing_model_and_wrong_kind(trained, tmp_path):
    image = _write(tmp_path / "a.png", np.full((8, 8), 100, np.uint8))
    missing = run_cli("enhance", tmp_path / "none.safetensors", image, "-o", tmp_path / "out", check_rc=2)
    assert "model file not found" in missing.stderr and str(tmp_path / "none.safetensors") in missing.stderr
    wrong = run_cli("enhance", trained["paths"]["dcnn_hr"], image, "-o", tmp_path / "out", check_rc=2)
    assert "is a 'classifier' model file, not a 'sr' one" in wrong.stderr
    assert not (tmp_path / "out").exists()


def test_tiles_join_seamlessly(trained):
    """A tiled image equals the whole-image result (within rounding) when the half of each tile's
    context that is blended covers the network's receptive field (SRCNN 5-3-3 plus the bicubic
    skip: 5 LR pixels); without context the seams show."""
    model, _ = sr_infer.load_model(trained["paths"]["sr"])
    rng = np.random.default_rng(2)
    image = cv2.resize(banded_rod(1, rng, 96), (48, 40), interpolation=cv2.INTER_AREA)
    cpu = torch.device("cpu")
    whole = sr_infer.predict_tiled(model, image[None], SCALE, 255.0, cpu, 0)
    tiled = sr_infer.predict_tiled(model, image[None], SCALE, 255.0, cpu, 16, overlap=12)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1 and (tiled == whole).mean() > 0.999
    seams = sr_infer.predict_tiled(model, image[None], SCALE, 255.0, cpu, 16, overlap=0)
    assert (seams != whole).any()


def test_cli_output_is_bit_identical_to_the_workflow_infer_sr(trained, tmp_path):
    """Workflow inference (rule infer_sr on an LR shard) and `karyosr enhance` on the same
    images saved as PNG give the same pixels."""
    out_shard = tmp_path / "sr.parquet"
    sr_infer.run(trained["root"] / "lr.parquet", trained["paths"]["sr"], "tiny_srcnn",
                 {"device": "cpu", "tile": 0, "tile_overlap": 16, "infer_batch_size": 64, "bf16": True}, out_shard)
    meta, workflow_images = shards.read_shard(out_shard)
    folder = tmp_path / "lr"
    for image_id, image, split in zip(trained["ids"], trained["lr"], trained["split"]):
        if split == "test":
            _write(folder / f"{image_id}.png", image)
    run_cli("enhance", trained["paths"]["sr"], folder, "-o", tmp_path / "out", "--suffix", "", "-q")
    assert len(meta) == len(list(folder.iterdir())) > 5
    for image_id, expected in zip(meta["image_id"], workflow_images):
        written = cv2.imread(str(tmp_path / "out/lr" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(written, expected, err_msg=image_id)


def test_classify_writes_top3_and_skips_rejected_images(trained, tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "cell1"
    # Larger than the crop, 8- and 16-bit: cropped to the model's 32 px as in training.
    _write(folder / "a.png", np.pad(banded_rod(0, rng), 12, constant_values=235))
    _write(folder / "b.tif", banded_rod(3, rng, dtype=np.uint16))
    _write(folder / "flat.png", np.full((40, 40), 200, np.uint8))
    (folder / "broken.bmp").write_bytes(b"BM" + b"\0" * 10)
    table_path = tmp_path / "table.csv"
    result = run_cli("classify", trained["paths"]["dcnn_hr"], folder, "-o", table_path, check_rc=1)
    assert "flat.png: no foreground" in result.stderr and "broken.bmp" in result.stderr
    table = pd.read_csv(table_path, dtype={"predicted": str, "second": str, "third": str})
    assert list(table.columns) == ["file", "predicted", "predicted_probability", "second", "second_probability",
                                   "third", "third_probability"]
    assert [Path(f).name for f in table["file"]] == ["a.png", "b.tif"]
    assert set(table["predicted"]) <= set(CLASS_NAMES)
    assert (table["predicted_probability"] >= table["second_probability"]).all()
    assert (table["second_probability"] >= table["third_probability"]).all()
    # The same as prepare_input + infer in the package.
    model, meta = predict.load_classifier(trained["paths"]["dcnn_hr"])
    image = prepare_input(cv2.imread(str(folder / "a.png"), cv2.IMREAD_UNCHANGED), meta)
    calibrated = meta["calibration"]  # fitted on the validation split by train_classifier
    assert calibrated["val_images"] == 12 and calibrated["val_nll_after"] <= calibrated["val_nll_before"] + 1e-4
    probabilities, _ = predict.infer(model, image[None], 255.0, torch.device("cpu"), bf16=False,
                                     temperature=calibrated["temperature"])
    assert table["predicted"][0] == CLASS_NAMES[int(probabilities.argmax())]
    assert table["predicted_probability"][0] == pytest.approx(float(probabilities.max()), abs=1e-5)


def test_classify_super_network_on_lr_images_with_cell_decoding(trained, tmp_path):
    for cell in ("cellA", "cellB"):
        for i, image in enumerate(trained["lr"][:4]):
            _write(tmp_path / "cells" / cell / f"{i}.png", image)
    result = run_cli("classify", trained["paths"]["super_dcnn"], tmp_path / "cells", "--cell-decode")
    table = pd.read_csv(io.StringIO(result.stdout), dtype=str)
    assert len(table) == 8 and {"cell", "decoded"} <= set(table.columns)
    assert set(table["decoded"]) <= set(CLASS_NAMES)
    assert table["cell"].nunique() == 2
    # four images of a cell: the count is reported, and flagged only for cells said to be complete
    assert "cell " in result.stderr and "4 chromosomes, " in result.stderr and "flagged" not in result.stderr
    complete = run_cli("classify", trained["paths"]["super_dcnn"], tmp_path / "cells", "--cell-decode",
                       "--complete-cells")
    assert complete.stderr.count("flagged: 4 chromosomes (expected 46)") == 2


# --------------------------------------------------------------------------- domains and quality


@pytest.fixture(scope="module")
def dark_model(tmp_path_factory):
    """An SR model trained on bright rods on a dark background (fluorescence, Q-band), whose HR
    shard names its dataset and pixel size."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("dark")
    rng = np.random.default_rng(10)
    n = 24
    hr = [255 - banded_rod(k % 4, rng) for k in range(n)]
    lr = [cv2.resize(im, (SIZE // SCALE, SIZE // SCALE), interpolation=cv2.INTER_AREA) for im in hr]
    meta = pd.DataFrame({"image_id": [f"q{i:03d}" for i in range(n)],
                         "split": np.array(["train", "val"])[np.arange(n) % 2]})
    shards.write_shard(root / "hr.parquet", meta.assign(dataset="qband_test", pixel_size_um=0.05), hr)
    shards.write_shard(root / "lr.parquet", meta.assign(scale=SCALE), lr)
    cfg = validated(degrade={"profiles": [PROFILE]}, classify={"experiments": []}, sr={
        "profiles": [PROFILE["name"]], "device": "cpu", "models": [{
            "name": "dark_srcnn", "arch": "srcnn", "epochs": 1, "steps_per_epoch": 2, "batch_size": 4,
            "patch_size": 16, "options": {"channels": [4, 4], "kernels": [5, 3, 3], "input_shift": "auto"}}]})
    path = root / "model.safetensors"
    sr_train.run([root / "hr.parquet"], [root / "lr.parquet"], config.sr_model_settings(cfg, "dark_srcnn"), 0, path,
                 root / "history.parquet", root / "checkpoints", profile=PROFILE, crop=cfg["crop_filter"])
    return {"path": path, "lr": lr}


def test_enhance_skips_images_outside_the_models_domain_unless_forced(dark_model, tmp_path):
    meta = model_file.read_metadata(dark_model["path"])
    trained_on = meta["domain"]
    assert trained_on["polarity"] == "light_on_dark" and trained_on["image_count"] == 12
    assert trained_on["dataset"] == "qband_test" and trained_on["pixel_size_um"] == pytest.approx(0.05 * SCALE)
    rng = np.random.default_rng(11)
    photo = np.clip(np.rint(rng.normal(180, 10, (20, 20))), 0, 255).astype(np.uint8)  # a grey photo
    grey = _write(tmp_path / "in/grey.png", photo)
    mean = f"mean grey {photo.mean() / 255:.2f}"
    same = _write(tmp_path / "in/same.png", cv2.resize(255 - banded_rod(1, rng, 40), (20, 20),
                                                        interpolation=cv2.INTER_AREA))
    skipped = run_cli("enhance", dark_model["path"], tmp_path / "in", "-o", tmp_path / "out", "--suffix", "",
                      check_rc=1)
    assert f"skipped {grey}: {mean}, model trained on {trained_on['mean_grey']:.2f}" in skipped.stderr
    assert "results are unreliable; retrain on your images or use --force" in skipped.stderr
    assert f"skipped {same}" not in skipped.stderr and "1 image(s) enhanced" in skipped.stderr
    assert (tmp_path / "out/in/same.png").exists() and not (tmp_path / "out/in/grey.png").exists()
    forced = run_cli("enhance", dark_model["path"], grey, same, "-o", tmp_path / "forced", "--suffix", "", "--force",
                     "-q")
    assert f"warning: {grey}: {mean}" in forced.stderr and "skipped" not in forced.stderr
    assert str(same) not in forced.stderr
    assert cv2.imread(str(tmp_path / "forced/grey.png"), cv2.IMREAD_UNCHANGED).shape == (40, 40)
    # Models without a domain (written before it was recorded) check nothing.
    failures = cli.Failures()
    assert not cli.out_of_domain(grey, photo, None, False, failures, "enhance") and not failures.entries
    assert cli.out_of_domain(grey, photo, trained_on, False, failures, "enhance") and len(failures.entries) == 1


def test_classify_skips_crops_outside_the_models_domain(trained, tmp_path):
    rng = np.random.default_rng(12)
    # The classifier was trained on dark rods on white; a bright rod on black is the other polarity.
    _write(tmp_path / "cell/inverted.png", 255 - banded_rod(1, rng))
    _write(tmp_path / "cell/same.png", banded_rod(1, rng))
    result = run_cli("classify", trained["paths"]["dcnn_hr"], tmp_path / "cell", check_rc=1)
    assert "inverted.png: mean grey" in result.stderr and "polarity light_on_dark, model trained on dark_on_light" \
        in result.stderr
    assert [Path(f).name for f in pd.read_csv(io.StringIO(result.stdout))["file"]] == ["same.png"]
    forced = run_cli("classify", trained["paths"]["dcnn_hr"], tmp_path / "cell", "--force")
    assert len(pd.read_csv(io.StringIO(forced.stdout))) == 2 and "warning:" in forced.stderr


def test_info_shows_the_domain(dark_model):
    text = run_cli("info", dark_model["path"]).stdout
    line = next(line for line in text.splitlines() if line.startswith("domain"))
    assert "12 training images of dataset qband_test, 8 bit, pixel size 0.1 um" in line
    assert "mean grey" in text and "polarity light_on_dark (100% of the images)" in text
    as_json = json.loads(run_cli("info", "--json", dark_model["path"]).stdout)
    assert as_json["domain"] == model_file.read_metadata(dark_model["path"])["domain"]


def test_quality_table_with_and_without_references(tmp_path):
    from karyosr.quality import niqe, piqe

    rng = np.random.default_rng(13)
    references = {f"r{i}": np.pad(banded_rod(i, rng, 64), 16, constant_values=235) for i in range(4)}
    for name, image in references.items():
        _write(tmp_path / "ref" / f"{name}.png", image)
    degraded = {name: cv2.GaussianBlur(image, (0, 0), 1.5) for name, image in references.items()}
    for name, image in degraded.items():
        _write(tmp_path / "test" / f"{name}.png", image)
    # Without references: PIQE only; NIQE has no pristine model (a note says so).
    plain = run_cli("quality", tmp_path / "test")
    table = pd.read_csv(io.StringIO(plain.stdout))
    assert list(table.columns) == ["file", "height", "width", "niqe", "piqe"] and len(table) == 4
    assert table["niqe"].isna().all() and (table["height"] == 96).all()
    assert "no NIQE pristine model" in plain.stderr
    np.testing.assert_allclose(table["piqe"], [piqe.piqe(degraded[f"r{i}"]) for i in range(4)], atol=1e-5)
    # With references: PSNR, SSIM, MSE per matched file, NIQE against a model fitted on the references.
    _write(tmp_path / "test/r0_copy.png", references["r0"])
    _write(tmp_path / "ref/r0_copy.png", references["r0"])
    _write(tmp_path / "test/small.png", references["r1"][:48, :48])
    _write(tmp_path / "ref/small.png", references["r1"])
    _write(tmp_path / "test/orphan.png", references["r2"])
    out = tmp_path / "quality.csv"
    result = run_cli("quality", tmp_path / "test", "--reference", tmp_path / "ref", "-o", out, check_rc=1)
    assert "small.png: size 48x48 differs from its reference" in result.stderr
    assert "orphan.png: no reference image named orphan.* in" in result.stderr
    table = pd.read_csv(out).set_index(pd.read_csv(out)["file"].map(lambda f: Path(f).stem))
    assert list(table.columns) == ["file", "height", "width", "niqe", "piqe", "psnr", "ssim", "mse"]
    assert sorted(table.index) == ["r0", "r0_copy", "r1", "r2", "r3"]
    assert tuple(table.loc["r0_copy", ["psnr", "ssim", "mse"]]) == (100, 1, 0)
    mse = ((references["r1"].astype(float) - degraded["r1"]) ** 2).mean()
    assert table.loc["r1", "mse"] == pytest.approx(mse, rel=1e-5)
    assert table.loc["r1", "psnr"] == pytest.approx(10 * np.log10(255**2 / mse), rel=1e-5)
    assert table["niqe"].notna().all()
    # The same NIQE from the model saved as a file (--niqe-model, as the workflow writes it).
    # The reference folder in name order: r0, r0_copy, r1, r2, r3, small (r1 whole).
    pristine_set = [references[k] for k in ("r0", "r0", "r1", "r2", "r3", "r1")]
    mu, cov = niqe.fit_pristine(pristine_set, patch_size=32)
    niqe.save_model(tmp_path / "pristine.npz", niqe.PristineModel(mu, cov, "paper", 32))
    from_file = pd.read_csv(io.StringIO(run_cli("quality", tmp_path / "test/r1.png", "--niqe-model",
                                                 tmp_path / "pristine.npz").stdout))
    assert from_file["niqe"][0] == pytest.approx(table.loc["r1", "niqe"], abs=1e-5)
    bad = run_cli("quality", tmp_path / "test", "--niqe-model", tmp_path / "none.npz", check_rc=2)
    assert "cannot use NIQE model" in bad.stderr
    # No torch for scoring images.
    probe = subprocess.run([sys.executable, "-c", "import sys; from karyosr import cli; "
                            f"cli.main(['quality', '-q', {str(tmp_path / 'test/r1.png')!r}]); "
                            "print('torch' in sys.modules)"], capture_output=True, text=True, check=True)
    assert probe.stdout.strip().endswith("False")


# --------------------------------------------------------------------------- published weights, TIFF, conventions


def _published_file(path: Path, arch: str) -> torch.nn.Module:
    """A published-format weights file: an RGB network saved under BasicSR's key names in a
    ``params_ema`` wrapper, with a ``params`` entry of other weights that must not be used."""
    torch.manual_seed(0)
    if arch == "rrdbnet":
        network = archs.RRDBNet(4, num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, num_grow_ch=4)
    else:
        network = archs.MSRResNet(4, num_in_ch=3, num_out_ch=3, num_feat=8, num_block=3)
    basicsr_names = {key.replace("conv_up", "upconv") if arch == "msrresnet" else key: value
                     for key, value in network.state_dict().items()}
    torch.save({"params": {k: torch.zeros_like(v) for k, v in basicsr_names.items()}, "params_ema": basicsr_names},
               path)
    return network.eval()


def _ij_tiff(path: Path, image: np.ndarray, pixels_per_micron: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, image, imagej=True, resolution=(pixels_per_micron, pixels_per_micron),
                     metadata={"unit": "micron", "axes": "YX"})
    return path


@pytest.mark.parametrize("arch", ["rrdbnet", "msrresnet"])
def test_published_basicsr_weights_run_directly_and_tiffs_keep_their_scaled_pixel_size(tmp_path, arch):
    network = _published_file(tmp_path / "published_x4.pth", arch)
    rng = np.random.default_rng(20)
    image = rng.integers(0, 65536, (9, 11)).astype(np.uint16)
    _ij_tiff(tmp_path / "in/cell.tif", image, 10.0)
    tifffile.imwrite(tmp_path / "in/ome.ome.tif", image, ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1})
    result = run_cli("enhance", tmp_path / "published_x4.pth", "-i", tmp_path / "in", "-o", tmp_path / "out")
    assert "2 image(s) enhanced x4" in result.stderr
    # The RGB network on the grey image given as R = G = B, its three outputs averaged (the grey
    # model file is the RGB one reduced), rounded to 16 bits.
    with torch.no_grad():
        grey = torch.from_numpy(image.astype(np.float32) / 65535)[None, None]
        expected = network(grey.repeat(1, 3, 1, 1)).mean(1)[0].clamp(0, 1).mul(65535).numpy()
    with tifffile.TiffFile(tmp_path / "out/in/cell_published_x4_x4.tif") as tif:
        written = tif.asarray()
        assert tif.imagej_metadata["unit"] == "micron"
        assert tif.pages.first.tags["XResolution"].value == (40, 1)  # 10 px/um enlarged x4
        assert tif.pages.first.tags["YResolution"].value == (40, 1)
    assert written.dtype == np.uint16 and written.shape == (36, 44)
    assert np.abs(written.astype(np.float64) - expected).max() <= 1
    with tifffile.TiffFile(tmp_path / "out/in/ome.ome_published_x4_x4.tif") as tif:
        assert tif.is_ome and 'PhysicalSizeX="0.025"' in tif.ome_metadata and 'PhysicalSizeY="0.025"' in tif.ome_metadata
    info = run_cli("info", tmp_path / "published_x4.pth").stdout
    assert f"arch            {arch}" in info and "scale           4" in info and "input_channels  3" in info


def test_published_file_of_an_unknown_network_asks_for_arch(tmp_path):
    torch.save({"params": {"body.0.weight": torch.zeros(4, 3, 3, 3)}}, tmp_path / "compact.pth")
    image = _write(tmp_path / "a.png", np.full((8, 8), 100, np.uint8))
    result = run_cli("enhance", tmp_path / "compact.pth", image, "-o", tmp_path / "out", check_rc=2)
    assert "cannot tell the network from its weights" in result.stderr and "give --arch rrdbnet" in result.stderr
    wrong = run_cli("enhance", tmp_path / "compact.pth", image, "-o", tmp_path / "out", "--arch", "msrresnet",
                    check_rc=2)
    assert "not a published msrresnet file" in wrong.stderr
    assert not (tmp_path / "out").exists()


def test_enhance_takes_real_esrgan_style_options(trained, tmp_path):
    rng = np.random.default_rng(21)
    lr = cv2.resize(banded_rod(2, rng, 40), (20, 20), interpolation=cv2.INTER_AREA)
    _write(tmp_path / "in/a.png", lr)
    _write(tmp_path / "in/sub/b.png", lr)
    _write(tmp_path / "in/c.tif", lr.astype(np.uint16) * 257)
    (tmp_path / "in/notes.txt").write_text("not taken")
    single = _write(tmp_path / "single.bmp", lr)
    result = run_cli("enhance", trained["paths"]["sr"], single, "-i", tmp_path / "in", "--glob", "*.png",
                     "-o", tmp_path / "out", "--suffix", "_sr", "--ext", "tif", "--half", "--device", "cpu")
    assert "warning: --half applies on a CUDA GPU; running in float32 on cpu" in result.stderr
    assert "enhance 3/3" in result.stderr  # the progress, a line per file when stderr is no terminal
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*"))
    assert written == ["in", "in/a_sr.tif", "in/sub", "in/sub/b_sr.tif", "single_sr.tif"]
    model, _ = sr_infer.load_model(trained["paths"]["sr"])
    expected = sr_infer.predict_tiled(model, lr[None], SCALE, 255.0, torch.device("cpu"), 0)[0]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out/in/sub/b_sr.tif"), expected)
    # 16 bits cannot be JPEG: that file is skipped with the reason, the others written.
    jpeg = run_cli("enhance", trained["paths"]["sr"], "-i", tmp_path / "in", "-o", tmp_path / "jpeg", "--ext", "jpg",
                   check_rc=1)
    assert "c.tif: a uint16 image cannot be written as JPEG (8 bits only); use --ext png or tif" in jpeg.stderr
    assert (tmp_path / "jpeg/in/a_tiny_srcnn_x2.jpg").exists()
    none = run_cli("enhance", trained["paths"]["sr"], "-o", tmp_path / "none", check_rc=2)
    assert "no IMAGE_OR_FOLDER given (positional or -i)" in none.stderr


def test_outputs_are_readable_by_group_and_others_under_umask_022(trained, tmp_path):
    _write(tmp_path / "in/a.png", np.full((10, 10), 200, np.uint8))
    previous = os.umask(0o022)
    try:
        run_cli("enhance", trained["paths"]["sr"], tmp_path / "in", "-o", tmp_path / "out", "--force", "-q")
        run_cli("quality", tmp_path / "in", "-o", tmp_path / "quality.csv", "-q")
    finally:
        os.umask(previous)
    for path in (tmp_path / "out/in/a_tiny_srcnn_x2.png", tmp_path / "quality.csv"):
        assert oct(path.stat().st_mode & 0o777) == oct(0o644), path
