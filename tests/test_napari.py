"""The napari plugin (karyosr.napari), headless: Qt's offscreen platform, napari's viewer model
and pytest-qt. Model files are built here from the package's network builders (untrained
weights: what is checked is that the widget runs the package's own inference and places its
output, not what the networks learned) and written with the package's model-file writer.

Skips when napari or its Qt binding cannot be imported; with KARYOSR_REQUIRE_SERVICES=1 (CI,
which installs both through the ``test`` extra) it fails with the reason instead.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any test creates the QApplication

import cv2
import numpy as np
import pytest
import torch

from karyosr import cli, domain, model_file
from karyosr.classify import inputs, predict
from karyosr.classify.supernet import build_classifier
from karyosr.engine import pick_device
from karyosr.labels import CLASS_NAMES
from karyosr.sr import archs, infer

from workflow_helpers import skip_or_fail

try:
    import napari
    from qtpy import QtWidgets  # noqa: F401  (the Qt binding napari runs on)

    MISSING = ""
except ImportError as exc:
    MISSING = f"napari or a Qt binding is not importable ({exc}); install them with pip install -e '.[test]'"

SCALE = 2
SR_OPTIONS = {"channels": [8, 4], "kernels": [5, 3, 3], "input_shift": 0.5}
EXPERIMENT = {"name": "tiny_dcnn", "input": "hr", "backbone": "dcnn", "backbone_options": {"width": 0.125}}
RUN_TIMEOUT_MS = 120_000
# what napari says when a plugin reaches into its private attributes (to be refused from 0.10)
pytestmark = pytest.mark.filterwarnings("error:Private attribute access:FutureWarning")


@pytest.fixture
def bot(request):
    """pytest-qt's qtbot (and with it the QApplication), asked for once napari and Qt are found."""
    if MISSING:
        skip_or_fail(MISSING)
    return request.getfixturevalue("qtbot")


@pytest.fixture
def viewer(bot):
    """napari's viewer model: the layers and reading a Viewer has, without its OpenGL canvas,
    which Qt's offscreen platform cannot give a context (the widget uses only the model)."""
    return napari.components.ViewerModel()


@pytest.fixture
def widget(viewer, bot):
    from napari.utils._proxies import PublicOnlyProxy

    from karyosr.napari.widget import ModelWidget

    # napari hands dock widgets this proxy of its viewer, which warns on private attributes
    made = ModelWidget(PublicOnlyProxy(viewer))
    bot.addWidget(made)  # closed after the test
    return made


def rods(make_rod, shape=(64, 48), length=40, width=10) -> list[np.ndarray]:
    """Dark banded rods on a light background, at a few angles: the model's training images."""
    return [make_rod(shape=shape, center=(shape[0] // 2, shape[1] // 2), length=length, width=width, angle=angle)[0]
            for angle in (-20, -10, 0, 10, 20)]


@pytest.fixture
def sr_model(tmp_path, make_rod):
    torch.manual_seed(0)
    network = archs.build_sr("srcnn", SCALE, **SR_OPTIONS)
    path = tmp_path / "sr.safetensors"
    model_file.save(path, network.state_dict(), {
        "kind": "sr", "name": "tiny_srcnn", "arch": "srcnn", "scale": SCALE, "options": SR_OPTIONS,
        "domain": domain.domain_record(np.stack(rods(make_rod)), 255.0, dataset="test rods")})
    return path


@pytest.fixture
def classifier(tmp_path, make_rod):
    torch.manual_seed(0)
    network = build_classifier({**EXPERIMENT, "init_from": None}, None)
    meta = {"kind": "classifier", "name": "tiny_dcnn", "backbone": "dcnn", "input": "hr", "scale": None,
            "class_names": CLASS_NAMES, "tta": True, "experiment": EXPERIMENT,
            "crop": {**cli.schema_defaults("crop_filter"), "target_size": 32}}
    crops = [inputs.prepare_input(image, meta) for image in rods(make_rod, (48, 40), length=26, width=8)]
    path = tmp_path / "classifier.safetensors"
    model_file.save(path, network.state_dict(), {**meta, "domain": domain.domain_record(np.stack(crops), 255.0)})
    return path


def choose_model(widget, path) -> None:
    widget.model_path.setText(str(path))
    widget.load_model()


def run_widget(widget, bot) -> None:
    widget.run_button.click()
    assert widget.worker is not None, widget.status.text()
    bot.waitUntil(lambda: widget.worker is None, timeout=RUN_TIMEOUT_MS)


def expected_top(path, image: np.ndarray) -> list[tuple[str, float]]:
    """The three likeliest classes of ``image`` by the package's own classify path, as the CLI runs it."""
    model, meta = predict.load_classifier(path)
    ready = inputs.prepare_input(image, meta)
    device = pick_device("auto")
    p, _ = predict.infer(model.to(device), ready[None], 255.0, device, tta=True,
                         temperature=predict.temperature_of(meta))
    best = np.argsort(-p[0], kind="stable")[:3]
    return [(CLASS_NAMES[k], float(p[0][k])) for k in best]


def table_row(widget, row: int) -> list[str]:
    return [widget.results.item(row, column).text() for column in range(widget.results.columnCount())]


# --------------------------------------------------------------------------- manifest and reader


def test_plugin_is_found_through_its_entry_point(viewer):
    from npe2 import PluginManager

    manager = PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest("karyosr")
    patterns = set(manifest.contributions.readers[0].filename_patterns)
    assert patterns == {f"*{suffix}" for suffix in cli.IMAGE_SUFFIXES}
    assert [w.display_name for w in manifest.contributions.widgets] == ["karyosr model"]
    from karyosr.napari.reader import get_reader
    from karyosr.napari.widget import ModelWidget

    assert manager.commands.get(manifest.contributions.readers[0].command) is get_reader
    assert manager.commands.get(manifest.contributions.widgets[0].command) is ModelWidget


def test_napari_docks_the_widget_with_its_viewer(bot, request):
    # a real Viewer's window (no image layers: the offscreen platform has no OpenGL to draw them)
    napari_viewer = request.getfixturevalue("make_napari_viewer")()
    from karyosr.napari.widget import ModelWidget

    _, docked = napari_viewer.window.add_plugin_dock_widget("karyosr", "karyosr model")
    assert isinstance(docked, ModelWidget)  # given the viewer (napari passes plugins a proxy of it)
    napari_viewer.add_shapes([np.array([[0.0, 0.0], [4.0, 4.0]])], shape_type="rectangle", name="boxes")
    assert [docked.region_choice.itemText(i) for i in range(docked.region_choice.count())] == ["whole layer", "boxes"]


def test_reader_opens_exported_images_grey_with_their_pixel_size(viewer, tmp_path, make_rod):
    from karyosr.io.export import encode
    from karyosr.napari.reader import get_reader

    grey = make_rod()[0]
    png = tmp_path / "cell__c1.png"
    png.write_bytes(encode(grey)[1])
    deep = make_rod(dtype=np.uint16)[0]
    tif = tmp_path / "deep.tif"
    # 20000 pixels per centimetre: 0.5 um pixels, as TIFF resolution tags record them
    cv2.imwrite(str(tif), deep, [cv2.IMWRITE_TIFF_RESUNIT, 3, cv2.IMWRITE_TIFF_XDPI, 20000,
                                 cv2.IMWRITE_TIFF_YDPI, 20000])
    colour = tmp_path / "colour.jpg"
    cv2.imwrite(str(colour), cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])

    [layer] = viewer.open(png, plugin="karyosr")
    assert layer.name == "cell__c1" and not layer.rgb
    np.testing.assert_array_equal(layer.data, grey)
    assert tuple(layer.scale) == (1.0, 1.0)
    [layer] = viewer.open(tif, plugin="karyosr")
    assert layer.data.dtype == np.uint16
    np.testing.assert_array_equal(layer.data, deep)
    np.testing.assert_allclose(layer.scale, (0.5, 0.5))
    assert all(str(unit) == "micrometer" for unit in layer.units)
    [layer] = viewer.open(colour, plugin="karyosr")
    assert layer.data.ndim == 2 and not layer.rgb and layer.metadata["converted_from"] == "rgb"
    assert np.abs(layer.data.astype(int) - grey).max() <= 3
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader([str(png), str(tmp_path / "notes.txt")]) is None


# --------------------------------------------------------------------------- SR


def test_sr_adds_a_layer_over_the_input_tile_by_tile(viewer, widget, bot, sr_model, make_rod):
    image = make_rod(shape=(64, 48), center=(32, 24), length=40, width=10)[0]
    source = viewer.add_image(image, name="cell", scale=(0.5, 0.5), translate=(3.0, 4.0))
    choose_model(widget, sr_model)
    assert "SR model tiny_srcnn" in widget.model_info.text() and "test rods" in widget.model_info.text()
    assert widget.image_choice.currentText() == "cell"
    widget.tile.setValue(16)  # 4 x 3 tiles
    run_widget(widget, bot)

    result = viewer.layers["cell x2 tiny_srcnn"]
    assert result.data.shape == (128, 96) and result.data.dtype == np.uint8
    np.testing.assert_allclose(result.scale, (0.25, 0.25))
    # the output covers the input's area exactly: its outer pixel edges are the input's
    for corner, out_corner in (((-0.5, -0.5), (-0.5, -0.5)), ((63.5, 47.5), (127.5, 95.5))):
        np.testing.assert_allclose(result.data_to_world(out_corner), source.data_to_world(corner))
    model, _ = infer.load_model(sr_model)
    device = pick_device("auto")
    expected = infer.predict_tiled(model.to(device), image[None], SCALE, 255.0, device, 16, 16)[0]
    np.testing.assert_array_equal(result.data, expected)
    assert widget.progress.value() == widget.progress.maximum() == 12
    assert widget.warning.text() == "" and result.metadata["karyosr"]["domain_warnings"] == []


def test_sr_run_stops_between_tiles(viewer, widget, bot, sr_model, make_rod):
    viewer.add_image(make_rod(shape=(256, 256), center=(128, 128), length=200, width=30)[0], name="big")
    choose_model(widget, sr_model)
    widget.tile.setValue(8)  # 1024 tiles
    widget.tiles_done.connect(widget.stop_button.click)
    run_widget(widget, bot)
    assert widget.status.text() == "stopped"
    assert [layer.name for layer in viewer.layers] == ["big"]
    assert 0 < widget.progress.value() < 1024


def test_sr_outside_the_domain_runs_with_the_warning_shown(viewer, widget, bot, sr_model, make_rod):
    bright_on_dark = 255 - make_rod(shape=(64, 48), center=(32, 24), length=40, width=10)[0]
    viewer.add_image(bright_on_dark, name="inverted")
    choose_model(widget, sr_model)
    assert widget.tile.text() == "auto"  # enhance's default: this small image runs whole
    run_widget(widget, bot)
    assert widget.progress.value() == widget.progress.maximum() == 1
    text = widget.warning.text()
    assert "Outside the model's training domain" in text and "inverted: " in text
    assert "polarity light_on_dark, model trained on dark_on_light" in text
    assert viewer.layers["inverted x2 tiny_srcnn"].metadata["karyosr"]["domain_warnings"]


# --------------------------------------------------------------------------- classifier


def test_classifier_shows_the_top_three_classes_of_the_layer(viewer, widget, bot, classifier, make_rod):
    image = make_rod(shape=(48, 40), center=(24, 20), length=26, width=8)[0]
    viewer.add_image(image, name="chromosome")
    choose_model(widget, classifier)
    assert widget.model_info.text().startswith("classifier tiny_dcnn: dcnn on hr images, 24 classes")
    assert not widget.tile.isEnabled() and widget.region_choice.currentText() == "whole layer"
    run_widget(widget, bot)

    assert widget.results.rowCount() == 1
    row = table_row(widget, 0)
    assert row[0] == "chromosome" and row[4] == ""
    assert row[1:4] == [f"{name} {p:.2f}" for name, p in expected_top(classifier, image)]
    assert widget.warning.text() == ""


def test_classifier_classifies_each_rectangle(viewer, widget, bot, classifier, make_rod):
    image = np.full((80, 120), 220, np.uint8)
    rod = make_rod(shape=(48, 40), center=(24, 20), length=26, width=8)[0]
    image[10:58, 60:100] = rod
    viewer.add_image(image, name="spread", scale=(0.5, 0.5))
    # shapes in world coordinates: the rod's box, and a box beside the image
    boxes = viewer.add_shapes([np.array([[5.0, 30.0], [28.5, 49.5]]), np.array([[50.0, 70.0], [60.0, 80.0]])],
                              shape_type="rectangle", name="boxes")
    choose_model(widget, classifier)
    assert widget.region_choice.currentText() == "boxes"  # the active layer
    run_widget(widget, bot)

    assert widget.results.rowCount() == 2
    first, second = table_row(widget, 0), table_row(widget, 1)
    top = expected_top(classifier, rod)
    assert first[:4] == ["shape 1"] + [f"{name} {p:.2f}" for name, p in top]
    assert second[0] == "shape 2" and second[4] == "skipped: outside the image layer"
    assert list(boxes.features["karyosr_class"]) == [f"{top[0][0]} {top[0][1]:.2f}", ""]


def test_files_the_widget_cannot_run_say_why(viewer, widget, tmp_path):
    bare = tmp_path / "bare.safetensors"
    model_file.save(bare, {"w": torch.zeros(1)}, {"kind": "features", "channels": [4], "num_classes": 24})
    choose_model(widget, bare)
    assert "a 'features' model file; pick an SR model or a classifier" in widget.model_info.text()
    assert not widget.run_button.isEnabled()
    choose_model(widget, tmp_path / "missing.safetensors")
    assert "model file not found" in widget.model_info.text()
