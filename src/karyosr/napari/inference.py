"""What the napari dock widget runs, kept free of Qt: model files told apart by kind, layer images
checked against a model's training domain, super-resolved tile by tile with a count of the tiles
done, classified whole or in rectangles.

Loading and inference are the package's own (``sr.infer.load_model`` / ``predict_tiled``,
``classify.predict.load_classifier`` / ``infer``, ``classify.inputs.prepare_input``), with the
defaults of ``karyosr enhance`` and ``karyosr classify``, so a layer gets the output those
commands give a file of the same pixels. torch is imported only when a model runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from karyosr import domain, model_file
from karyosr.io.images import data_range

RUNNABLE_KINDS = ("sr", "classifier")
TOP_CLASSES = 3
AUTO_TILE = -1  # the widget's "auto" tile: karyosr enhance's --tile auto
DEFAULT_OVERLAP = 16  # karyosr enhance's --overlap default (LR pixels)


class Cancelled(Exception):
    """Raised inside a run when the user stops it."""


def read_model(path) -> dict:
    """The metadata of a model file the widget runs (an SR model or a classifier), read without
    torch; FileNotFoundError or ValueError saying what the file is otherwise."""
    meta = model_file.read_metadata(path)
    kind = meta.get("kind")
    if kind not in RUNNABLE_KINDS:
        what = f"a {kind!r} model file" if kind else "a file without karyosr metadata (a bare weights file?)"
        raise ValueError(f"{path}: {what}; pick an SR model or a classifier, a model.safetensors written by "
                         "the workflow's train_sr or train_classifier rule")
    return meta


def describe(meta: dict) -> list[str]:
    """A model's kind, name and training domain as a few lines for the widget."""
    if meta["kind"] == "sr":
        lines = [f"SR model {meta.get('name')}: {meta.get('arch')}, x{meta.get('scale')}"]
    else:
        lines = [f"classifier {meta.get('name')}: {meta.get('backbone')} on {meta.get('input')} images, "
                 f"{len(meta.get('class_names', []))} classes"]
    if meta.get("domain"):
        return lines + domain.describe(meta["domain"])
    return lines + ["no training domain recorded: images are not checked against it"]


def layer_image(layer) -> np.ndarray:
    """An image layer's pixels as the 2-D uint8 / uint16 array a karyosr model takes; ValueError
    naming the layer otherwise."""
    if layer.multiscale or layer.rgb:
        raise ValueError(f"layer {layer.name!r} is {'multiscale' if layer.multiscale else 'RGB'}; karyosr models "
                         "take one 2-D grey image (open the file with the karyosr reader, which reduces colour "
                         "to grey)")
    image = np.asarray(layer.data)
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"layer {layer.name!r} holds a {image.dtype} image of shape {image.shape}; karyosr models "
                         "take 2-D 8- or 16-bit grey images (open the file with the karyosr reader, or select one "
                         "plane and convert it)")
    return image


def domain_warnings(image: np.ndarray, meta: dict) -> list[str]:
    """Where ``image`` lies outside the model's training domain (karyosr.domain.compare): the
    check by which ``karyosr enhance`` and ``classify`` skip images unless ``--force``."""
    return domain.compare(domain.image_statistics(image, data_range(image.dtype)), meta.get("domain"))


def tile_count(shape: tuple[int, int], tile: int) -> int:
    """How many windows ``predict_tiled`` runs the network on for one image: the whole image when
    it is no larger than ``tile`` a side, else ``ceil(side / tile)`` tiles along each axis."""
    height, width = shape
    if not tile or (height <= tile and width <= tile):
        return 1
    return math.ceil(height / tile) * math.ceil(width / tile)


def super_resolve(path, image: np.ndarray, tile: int, overlap: int = DEFAULT_OVERLAP,
                  on_progress: Callable[[int, int], None] = lambda done, total: None) -> tuple[np.ndarray, int]:
    """``image`` super-resolved by the SR model file at ``path``, and the model's scale. ``tile``:
    LR pixels a side, 0 for the whole image, AUTO_TILE for the one ``karyosr enhance --tile auto``
    takes (``infer.auto_tile``: the whole image when the model's forward pass over it fits the
    memory bound). ``on_progress(tiles done, tiles in all)`` is called after each batch of tiles;
    what it raises (Cancelled) stops the run."""
    from karyosr.engine import pick_device
    from karyosr.sr import infer

    model, meta = infer.load_model(path)
    scale = int(meta["scale"])
    device = pick_device("auto")
    model = model.to(device)
    if tile == AUTO_TILE:
        tile = infer.auto_tile(image.shape, scale, model, overlap=overlap)
    total, done = tile_count(image.shape, tile), 0

    # predict_tiled takes no progress callback; every network call runs a batch of its windows
    # (one image: the batch dimension counts tiles), so a hook on the calls counts the tiles done
    # and can stop the run between batches. Registered after auto_tile's probe call.
    def count(module, args, output) -> None:
        nonlocal done
        done += len(args[0])
        on_progress(done, total)

    hook = model.register_forward_hook(count)
    try:
        out = infer.predict_tiled(model, image[None], scale, data_range(image.dtype), device, tile, overlap)
    finally:
        hook.remove()
    return out[0], scale


def overlay_geometry(scale, translate, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale and translate of a layer ``factor`` times finer than a layer of ``scale`` and
    ``translate`` that covers the same area: pixel centres sit half a pixel in from the edges, so
    the finer layer's first centre lies (1 - 1 / factor) / 2 input pixels before the input's."""
    scale = np.asarray(scale, dtype=float)
    translate = np.asarray(translate, dtype=float)
    return scale / factor, translate + scale * (1 / factor - 1) / 2


def shape_crops(image_layer, shapes_layer) -> list[tuple[str, np.ndarray]]:
    """(name, pixels) of the image under each shape of ``shapes_layer``: the pixels whose centres
    lie in the shape's bounding box (a rectangle drawn in napari is its own box), mapped through
    both layers' world coordinates. A shape beside the image gives an empty crop."""
    image = layer_image(image_layer)
    crops = []
    for index, vertices in enumerate(shapes_layer.data):
        corners = np.array([image_layer.world_to_data(shapes_layer.data_to_world(v)) for v in vertices])[:, -2:]
        low = np.maximum(np.ceil(corners.min(axis=0)).astype(int), 0)
        high = np.minimum(np.floor(corners.max(axis=0)).astype(int) + 1, image.shape)
        crops.append((f"shape {index + 1}", image[low[0] : max(high[0], low[0]), low[1] : max(high[1], low[1])]))
    return crops


@dataclass
class CropResult:
    region: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (class name, probability), likeliest first
    warnings: list[str] = field(default_factory=list)  # domain warnings of the prepared crop
    skipped: str = ""  # why the crop was not classified


def classify(path, crops: list[tuple[str, np.ndarray]]) -> list[CropResult]:
    """The likeliest classes of each (name, image) crop by the classifier file at ``path``. Each
    crop is prepared as the training crops were (crop_filter, and upscaling for ``lr:`` inputs);
    one it cannot prepare (no foreground, too small, empty) is skipped with the reason."""
    from karyosr.classify import inputs, predict
    from karyosr.engine import pick_device

    model, meta = predict.load_classifier(path)
    inputs.input_crop(meta)  # a file without crop settings fails here, before any crop
    results, prepared = [], []
    for region, image in crops:
        result = CropResult(region)
        results.append(result)
        if image.size == 0:
            result.skipped = "outside the image layer"
            continue
        try:
            ready = inputs.prepare_input(image, meta)
        except ValueError as exc:
            result.skipped = str(exc)
            continue
        # the prepared crop, as the training crops were when their domain was measured
        result.warnings = domain_warnings(ready, meta)
        prepared.append((result, ready))
    if prepared:
        device = pick_device("auto")
        stack = np.stack([image for _, image in prepared])
        probabilities, _ = predict.infer(model.to(device), stack, data_range(stack.dtype), device,
                                         tta=bool(meta["tta"]), temperature=predict.temperature_of(meta))
        names = list(meta["class_names"])
        for (result, _), row in zip(prepared, probabilities):
            best = np.argsort(-row, kind="stable")[:TOP_CLASSES]
            result.top = [(names[k], float(row[k])) for k in best]
    return results
