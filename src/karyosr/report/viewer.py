"""The comparison viewer: results/report/viewer.html, one self-contained page (no network).

For every degradation profile and test image it shows the LR input, every method's output and
the HR image side by side with a shared zoom and pan, a before/after slider between any two of
them, and the image's PSNR/SSIM/NIQE/PIQE per method (results/metrics/per_image.parquet).

Size: the images of one profile and test image travel as one PNG sprite (LR at its own size,
then each method and HR at HR size, side by side), base64-encoded in a ``<script
type="application/octet-stream">`` block of its own. The browser keeps that text as a string and
decodes only the sprite of the image being shown (plus a small cache), so opening the page costs
parsing text, not decoding images. A sprite holds the same pixels as the shards (8-bit images
unchanged; 16-bit images are shown on 8 bits over the HR image's grey range, the same window for
every panel). Measured (with base64's third): 0.75 kB per 48 px G-band panel, 1.2 kB per 96 px
synthetic panel, 3.6 kB with added noise; config/README.md (report) has the page budget. ``report.viewer_max_images`` caps the test images per page (a fixed class-spread
choice, karyosr.report.figures.pick_samples) so that the page stays within its budget; the page's size is
logged and written into the page.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import re
from importlib import resources
from typing import Mapping

import cv2
import numpy as np
import pandas as pd

from karyosr.io import atomic, shards
from karyosr.io.export import HR, LR
from karyosr.report.figures import load_images, pick_samples

log = logging.getLogger(__name__)

# Per-image columns shown beside the images, in order; higher is better for the first two.
METRICS = ("psnr", "ssim", "niqe", "piqe")
TEMPLATE = "viewer_template.html"


def display_window(hr: np.ndarray) -> tuple[int, int]:
    """Grey levels mapped to black and white: the whole range for 8-bit images, the HR image's
    own range for 16-bit ones (microscopy cameras rarely fill 16 bits)."""
    if hr.dtype == np.uint8:
        return 0, 255
    low, high = int(hr.min()), int(hr.max())
    return low, max(high, low + 1)


def to_display(image: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """An image as 8-bit grey for the browser: unchanged for uint8 with the full window."""
    low, high = window
    if image.dtype == np.uint8 and (low, high) == (0, 255):
        return image
    scaled = (image.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def sprite(panels: list[np.ndarray], window: tuple[int, int]) -> tuple[bytes, list[list[int]]]:
    """One PNG holding the panels left to right, top-aligned, and each panel's [x, width, height]."""
    if not panels:
        raise ValueError("a sprite needs at least one panel")
    height = max(p.shape[0] for p in panels)
    canvas = np.zeros((height, sum(p.shape[1] for p in panels)), dtype=np.uint8)
    layout, x = [], 0
    for panel in panels:
        h, w = panel.shape
        canvas[:h, x : x + w] = to_display(panel, window)
        layout.append([x, w, h])
        x += w
    ok, data = cv2.imencode(".png", canvas, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise ValueError("OpenCV could not encode a sprite as PNG")
    return data.tobytes(), layout


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 4)


def metric_lookup(per_image: pd.DataFrame, hr_quality: pd.DataFrame | None) -> dict:
    """{(profile, image_id): {method: [psnr, ssim, niqe, piqe]}}; HR rows (no profile) carry only
    NIQE and PIQE and are copied into every profile."""
    table: dict = {}
    for row in per_image.itertuples(index=False):
        values = [_number(getattr(row, m, None)) for m in METRICS]
        table.setdefault((row.profile, row.image_id), {})[row.method] = values
    hr = {}
    if hr_quality is not None:
        for row in hr_quality.itertuples(index=False):
            hr[row.image_id] = [None, None, _number(getattr(row, "niqe", None)), _number(getattr(row, "piqe", None))]
    return {"by_image": table, "hr": hr}


def build_page(title: str, images: pd.DataFrame, profiles: list[dict], lr: Mapping[str, Mapping],
               sr: Mapping[str, Mapping[str, Mapping]], hr: Mapping, per_image: pd.DataFrame,
               hr_quality: pd.DataFrame | None = None) -> tuple[str, dict]:
    """The viewer page and its size figures.

    ``images``: the test images to offer (image_id, class_name). ``profiles``: [{name, scale,
    methods}] in display order. ``lr[profile][image_id]``, ``sr[profile][method][image_id]`` and
    ``hr[image_id]`` are the arrays. A missing image is an error naming profile, method and id.
    """
    if not profiles:
        raise ValueError("viewer: no degradation profile to show")
    lookup = metric_lookup(per_image, hr_quality)
    ids = list(images["image_id"])
    classes = [str(c) for c in images["class_name"]] if "class_name" in images else [""] * len(ids)
    blocks, sprites, metrics, budget = [], {}, {}, {"images": len(ids), "sprite_bytes": 0, "sprites": 0}

    def get(source: Mapping, key: str, where: str) -> np.ndarray:
        try:
            return source[key]
        except KeyError:
            raise ValueError(f"viewer: {where} has no image {key!r}") from None

    for p_index, profile in enumerate(profiles):
        name, methods = profile["name"], list(profile["methods"])
        sprites[name], metrics[name] = [], []
        for i, image_id in enumerate(ids):
            reference = get(hr, image_id, "the HR images")
            panels = [get(lr.get(name, {}), image_id, f"profile {name} (LR)")]
            panels += [get(sr.get(name, {}).get(method, {}), image_id, f"profile {name}, method {method}")
                       for method in methods]
            panels.append(reference)
            png, layout = sprite(panels, display_window(reference))
            text = base64.b64encode(png).decode("ascii")
            element = f"s{p_index}-{i}"
            blocks.append(f'<script type="application/octet-stream" id="{element}">{text}</script>')
            sprites[name].append({"el": element, "layout": layout})
            budget["sprite_bytes"] += len(text)
            budget["sprites"] += 1
            scores = lookup["by_image"].get((name, image_id), {})
            metrics[name].append([scores.get(m) for m in methods] + [lookup["hr"].get(image_id)])
    data = {
        "title": title,
        "metrics": list(METRICS),
        "profiles": [{"name": p["name"], "scale": int(p["scale"]), "panels": [LR, *p["methods"], HR]}
                     for p in profiles],
        "images": [{"id": image_id, "cls": cls} for image_id, cls in zip(ids, classes)],
        "sprites": sprites,
        "scores": metrics,
        "budget": dict(budget),
    }
    template = resources.files("karyosr.report").joinpath(TEMPLATE).read_text(encoding="utf-8")
    # '</' cannot end the JSON's <script> block early once written as '<\/'.
    values = {"TITLE": html.escape(title), "SPRITES": "\n".join(blocks),
              "DATA": json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")}
    page = re.sub(r"\{\{(TITLE|DATA|SPRITES)\}\}", lambda m: values[m[1]], template)
    budget["page_bytes"] = len(page.encode("utf-8"))
    budget["bytes_per_sprite"] = budget["sprite_bytes"] // max(budget["sprites"], 1)
    return page, budget


def write_viewer(path, title: str, **inputs) -> dict:
    """build_page, written atomically to ``path``; returns (and logs) the size figures."""
    page, budget = build_page(title, **inputs)
    atomic.write_text(path, page)
    log.info("viewer: %d test images x %d sprites, %.1f kB per sprite, page %.2f MB",
             budget["images"], budget["sprites"], budget["bytes_per_sprite"] / 1e3, budget["page_bytes"] / 1e6)
    return budget


def choose_images(split: pd.DataFrame, max_images: int) -> pd.DataFrame:
    """The test images the viewer offers: all of them, or a fixed class-spread choice of
    ``max_images`` (report.figures.pick_samples), in natural order of image_id (``c1 2a`` before ``c1 10a``)."""
    test = split[split["split"] == "test"]
    chosen = set(pick_samples(split, max_images)) if len(test) > max_images else set(test["image_id"])
    columns = [c for c in ("image_id", "class_name", "label") if c in test.columns]
    chosen = test.loc[test["image_id"].isin(chosen), columns]
    return chosen.sort_values("image_id", key=lambda ids: ids.map(natural_key)).reset_index(drop=True)


def natural_key(text: str) -> tuple:
    """Sort key that orders the digit runs of a string by value: 'c 2' < 'c 10'."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t)


def input_key(kind: str, profile: str, method: str = "") -> str:
    """The rule's named input holding one profile's LR shards or one method's SR shards there
    (names are [A-Za-z0-9_]+, so the key is a Python identifier; it is built, never parsed)."""
    return f"{kind}__{profile}" + (f"__{method}" if method else "")


def run(inputs: Mapping, profiles: list[dict], title: str, max_images: int, out_html) -> dict:
    """The rule's work: read what the page shows and write it. ``inputs`` holds ``split``,
    ``per_image``, ``hr_quality``, ``hr`` (shards) and the LR/SR shards under input_key()."""
    images = choose_images(shards.read_table(inputs["split"]), max_images)
    ids = list(images["image_id"])
    lr = {p["name"]: load_images(inputs[input_key("lr", p["name"])], ids) for p in profiles}
    sr = {p["name"]: {m: load_images(inputs[input_key("sr", p["name"], m)], ids) for m in p["methods"]}
          for p in profiles}
    per_image = shards.read_table(inputs["per_image"])
    return write_viewer(out_html, title, images=images, profiles=profiles, lr=lr, sr=sr,
                        hr=load_images(inputs["hr"], ids), per_image=per_image[per_image["image_id"].isin(set(ids))],
                        hr_quality=shards.read_table(inputs["hr_quality"]))
