"""The napari reader: image files decoded as ingest and ``karyosr enhance`` decode them.

PNG, TIFF, BMP and JPEG files (8 or 16 bit; colour reduced to BT.601 luminance) become one grey
image layer each, so the layer holds exactly the pixels a karyosr model is given. Where the file
records its pixel size (TIFF resolution tags, ImageJ's ``unit=``), the layer's scale is that size
in micrometres, so a super-resolved layer made from it keeps the physical size.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from karyosr.cli import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES
from karyosr.io.images import decode_image


def get_reader(path):
    """The reader for ``path`` (one file or a list of files), or None when any of them is not an
    image file karyosr reads, so napari offers another reader."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or any(Path(p).suffix.lower() not in IMAGE_SUFFIXES for p in paths):
        return None
    return read_layers


def read_layers(path) -> list[tuple]:
    """One napari image layer (data, keyword arguments, 'image') per file in ``path``."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return [_layer_data(Path(p)) for p in paths]


def _layer_data(path: Path) -> tuple:
    decoded = decode_image(path.read_bytes(), DEFAULT_MAX_PIXELS, path.name)
    if decoded.warning:
        # napari shows warnings raised while reading as notifications
        warnings.warn(f"{path}: the decoder warned: {decoded.warning}", stacklevel=2)
    kwargs = {"name": path.stem, "colormap": "gray",
              "metadata": {"path": str(path), "converted_from": decoded.converted,
                           "decode_warning": decoded.warning}}
    if math.isfinite(decoded.pixel_size_um):
        kwargs["scale"] = (decoded.pixel_size_um, decoded.pixel_size_um)
        kwargs["units"] = ("micrometer", "micrometer")
    return decoded.image, kwargs, "image"
