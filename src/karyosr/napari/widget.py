"""The napari dock widget: run a karyosr model file on an image layer.

Pick a model file (an SR model or a classifier: its metadata says which, as ``karyosr info``
shows) and an image layer. An SR model super-resolves the layer tile by tile, off the GUI thread
with a progress bar and a Stop button, into a new layer whose scale is the input's divided by the
model's factor (and shifted by the difference of half a pixel), so it lies over the input. A
classifier classifies the whole layer, or the image under each shape of a shapes layer (draw
rectangles around chromosomes), and lists the three likeliest classes of each; the shapes are
labelled with the likeliest one.

Images outside the model's training domain (the check ``karyosr enhance`` and ``classify`` skip
them by without ``--force``) are run all the same, with the warning shown in the widget and kept
in the new layer's metadata: in a viewer the user sees the result beside the warning.
"""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

import napari
from napari.qt.threading import create_worker
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
                            QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from karyosr.napari.inference import (AUTO_TILE, DEFAULT_OVERLAP, TOP_CLASSES, Cancelled, classify, describe,
                                      domain_warnings, layer_image, overlay_geometry, read_model, shape_crops,
                                      super_resolve)

WHOLE_LAYER = "whole layer"
WARNING_STYLE = "color: #e8a33d"
ERROR_STYLE = "color: #e05050"


class ModelWidget(QWidget):
    # emitted from the worker thread with (SR tiles done, tiles in all); Qt queues it to the GUI thread
    tiles_done = Signal(int, int)

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.meta: dict | None = None  # the chosen model file's metadata
        self.worker = None  # the run in progress
        self._stop = threading.Event()

        self.model_path = QLineEdit()
        self.model_path.setPlaceholderText("model.safetensors")
        self.model_path.editingFinished.connect(self.load_model)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.model_info = QLabel("no model chosen")
        self.model_info.setWordWrap(True)
        self.image_choice = QComboBox()
        self.region_choice = QComboBox()
        self.region_choice.setToolTip("classifiers: the whole layer, or the image under each shape of a shapes layer")
        self.tile = QSpinBox()
        self.tile.setRange(AUTO_TILE, 65536)
        self.tile.setSpecialValueText("auto")  # shown for the minimum, AUTO_TILE
        self.tile.setValue(AUTO_TILE)
        self.tile.setSuffix(" px")
        self.tile.setToolTip("SR models: images larger than this many pixels a side are run in tiles (0: whole "
                             "images; auto: as karyosr enhance --tile auto)")
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self._stop.set)
        self.progress = QProgressBar()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(WARNING_STYLE)
        self.results = QTableWidget(0, 2 + TOP_CLASSES)
        self.results.setHorizontalHeaderLabels(["region"] + [f"top {rank}" for rank in range(1, TOP_CLASSES + 1)]
                                               + ["note"])
        self.results.setEditTriggers(QTableWidget.NoEditTriggers)

        model_row = QHBoxLayout()
        model_row.addWidget(self.model_path)
        model_row.addWidget(browse)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_button)
        form = QFormLayout()
        form.addRow("model file", model_row)
        form.addRow("", self.model_info)
        form.addRow("image layer", self.image_choice)
        form.addRow("regions", self.region_choice)
        form.addRow("tile", self.tile)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        for widget in (self.progress, self.status, self.warning, self.results):
            layout.addWidget(widget)

        self.tiles_done.connect(self._advance_progress)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed,
                      self.viewer.layers.events.moved):
            event.connect(self._refresh_layers)
        self.viewer.layers.events.inserted.connect(self._watch_name)
        self.viewer.layers.selection.events.active.connect(self._follow_selection)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh_layers)
        self._refresh_layers()
        self._follow_selection()
        self._set_running(False)

    # ------------------------------------------------------------------ choosing

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "karyosr model file", "",
                                              "karyosr models (*.safetensors *.pt *.pth);;all files (*)")
        if path:
            self.model_path.setText(path)
            self.load_model()

    def load_model(self) -> None:
        """Read the chosen file's metadata (no torch) and show what model it is."""
        path = self.model_path.text().strip()
        self.meta = None
        if path:
            try:
                self.meta = read_model(path)
                self._show(self.model_info, "\n".join(describe(self.meta)))
            except (OSError, ValueError) as exc:
                self._show(self.model_info, f"cannot use this file: {exc}", ERROR_STYLE)
        else:
            self._show(self.model_info, "no model chosen")
        self._set_running(self.worker is not None)

    def _watch_name(self, event) -> None:
        event.value.events.name.connect(self._refresh_layers)

    def _refresh_layers(self, event=None) -> None:
        """Fill the layer lists from the viewer, keeping the chosen entries where they remain."""
        for combo, names in ((self.image_choice, self._layer_names(napari.layers.Image)),
                             (self.region_choice, [WHOLE_LAYER] + self._layer_names(napari.layers.Shapes))):
            chosen = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if chosen in names:
                combo.setCurrentText(chosen)
            combo.blockSignals(False)

    def _layer_names(self, kind) -> list[str]:
        return [layer.name for layer in self.viewer.layers if isinstance(layer, kind)]

    def _follow_selection(self, event=None) -> None:
        active = self.viewer.layers.selection.active
        if isinstance(active, napari.layers.Image):
            self.image_choice.setCurrentText(active.name)
        elif isinstance(active, napari.layers.Shapes):
            self.region_choice.setCurrentText(active.name)

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """Run the chosen model on the chosen layer in a worker thread."""
        if self.meta is None or self.worker is not None:
            return
        name = self.image_choice.currentText()
        if name not in self.viewer.layers:
            self._show(self.status, "no image layer to run on: open an image first", ERROR_STYLE)
            return
        layer = self.viewer.layers[name]
        path = self.model_path.text().strip()
        self._show(self.warning, "")
        self.results.setRowCount(0)
        try:
            if self.meta["kind"] == "sr":
                image = layer_image(layer)
                work = partial(super_resolve, path, image, self.tile.value(), DEFAULT_OVERLAP, self._tiles_finished)
                # the model as it is now: another may be chosen while this one runs
                done = partial(self._add_sr_layer, layer, path, self.meta["name"], domain_warnings(image, self.meta))
            else:
                region = self.region_choice.currentText()
                shapes = self.viewer.layers[region] if region != WHOLE_LAYER else None
                crops = shape_crops(layer, shapes) if shapes is not None else [(layer.name, layer_image(layer))]
                work = partial(classify, path, crops)
                done = partial(self._show_classes, shapes)
        except ValueError as exc:
            self._show(self.status, str(exc), ERROR_STYLE)
            return
        self.progress.setRange(0, 0)  # busy until the first tiles are done (classifying is one pass)
        self._stop.clear()
        self._show(self.status, f"running {self.meta.get('name')} on {layer.name}…")
        self.worker = create_worker(work, _connect={"returned": done, "errored": self._failed,
                                                    "finished": self._finished})
        self._set_running(True)

    def _tiles_finished(self, done: int, total: int) -> None:
        """Called in the worker thread after each batch of SR tiles."""
        self.tiles_done.emit(done, total)
        if self._stop.is_set():
            raise Cancelled()

    def _advance_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _add_sr_layer(self, source, model_path: str, model_name: str, warnings: list[str], result) -> None:
        image, factor = result
        scale, translate = overlay_geometry(source.scale, source.translate, factor)
        name = f"{source.name} x{factor} {model_name}"
        self.viewer.add_image(image, name=name, scale=scale, translate=translate, units=source.units,
                              colormap="gray", contrast_limits=source.contrast_limits,
                              metadata={"karyosr": {"model": model_path, "scale": factor,
                                                    "source": source.name, "domain_warnings": warnings}})
        self._show_domain([(source.name, warnings)] if warnings else [])
        self._show(self.status, f"added layer {name!r}: {source.data.shape[0]}x{source.data.shape[1]} -> "
                                f"{image.shape[0]}x{image.shape[1]} pixels")

    def _show_classes(self, shapes, results) -> None:
        self.results.setRowCount(len(results))
        for row, result in enumerate(results):
            cells = [result.region] + [f"{name} {p:.2f}" for name, p in result.top]
            cells += [""] * (1 + TOP_CLASSES - len(cells))
            cells.append(f"skipped: {result.skipped}" if result.skipped else "; ".join(result.warnings))
            for column, text in enumerate(cells):
                self.results.setItem(row, column, QTableWidgetItem(text))
        self.results.resizeColumnsToContents()
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self._show_domain([(r.region, r.warnings) for r in results if r.warnings])
        classified = sum(bool(r.top) for r in results)
        self._show(self.status, f"classified {classified} of {len(results)} region(s)")
        # the shapes are labelled only while they are the ones classified (none drawn meanwhile)
        if shapes is not None and len(shapes.data) == len(results):
            shapes.features = {"karyosr_class": [f"{r.top[0][0]} {r.top[0][1]:.2f}" if r.top else "" for r in results]}
            shapes.text = {"string": "{karyosr_class}", "color": "yellow", "anchor": "upper_left"}

    def _show_domain(self, warnings: list[tuple[str, list[str]]]) -> None:
        if not warnings:
            self._show(self.warning, "")
            return
        lines = [f"{where}: {'; '.join(texts)}" for where, texts in warnings]
        self._show(self.warning, "Outside the model's training domain, so the results are unreliable "
                                 "(retrain on such images):\n" + "\n".join(lines), WARNING_STYLE)

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, Cancelled):
            self._show(self.status, "stopped")
        else:
            self._show(self.status, f"failed: {exc}", ERROR_STYLE)

    def _finished(self) -> None:
        self.worker = None
        if self.progress.maximum() == 0:  # a run that failed before any progress: leave the busy state
            self.progress.setRange(0, 1)
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        sr = self.meta is not None and self.meta["kind"] == "sr"
        self.run_button.setEnabled(not running and self.meta is not None)
        self.stop_button.setEnabled(running and sr)  # SR runs stop between tiles; classifying is one pass
        self.tile.setEnabled(sr)
        self.region_choice.setEnabled(self.meta is not None and not sr)

    @staticmethod
    def _show(label: QLabel, text: str, style: str = "") -> None:
        label.setText(text)
        label.setStyleSheet(style)
