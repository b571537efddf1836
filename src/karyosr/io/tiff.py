"""TIFF files and the pixel size they record, read and written through tifffile.

A TIFF can say how large its pixels are in three places, and microscopy programs each read their own:

* the resolution tags (XResolution, YResolution: pixels per ResolutionUnit, inch or cm), which
  every TIFF reader knows;
* the ImageJ header (``ImageDescription`` ``ImageJ=...``): ``unit=micron`` names the length unit
  of the resolution tags (ResolutionUnit is then ``none``), ``spacing`` is the z step,
  ``xorigin``/``yorigin`` the origin in pixels; Fiji's Image > Properties shows this calibration;
* OME-XML (OME-TIFF): ``PhysicalSizeX``/``PhysicalSizeY`` with their units, what Bio-Formats reads.

:func:`read_calibration` collects all three from a file's bytes without decoding pixels;
:func:`encode` writes a 2-D uint8/uint16 image with a calibration scaled by the SR factor, in the
input's flavour (ImageJ, OME or plain TIFF): an image of 10 pixels per micron enlarged x4 is
written at 40 pixels per micron, so a length measured in Fiji stays the same. The z step is not
scaled: super-resolution enlarges x and y only.

Pixels are decoded by OpenCV (karyosr.io.images), not here: its libtiff reads LZW- and
JPEG-compressed TIFFs, which tifffile decodes only with the optional imagecodecs package.
Outputs are written uncompressed, as ImageJ writes them, so every reader opens them.
"""

from __future__ import annotations

import io
import math
import struct
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field, replace

import numpy as np
import tifffile

# Resolutions (dots per inch) that programs write by default, saying nothing about the sample.
SCREEN_DPI = (72.0, 96.0)
RESOLUTION_UNITS = {1: "none", 2: "inch", 3: "cm"}
_MICRONS_PER_RESOLUTION_UNIT = {2: 25400.0, 3: 1e4}
MICRONS_PER_UNIT = {"micron": 1.0, "microns": 1.0, "um": 1.0, "\u00b5m": 1.0, "\u03bcm": 1.0, "\\u00b5m": 1.0,
                    "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "inch": 25400.0}
# ImageJ header entries tifffile writes itself from the image's shape: never copied.
_IMAGEJ_STRUCTURE = {"ImageJ", "images", "channels", "slices", "frames", "hyperstack", "mode", "loop", "axes"}
# ImageJ entries in pixels: they scale with the image.
_IMAGEJ_IN_PIXELS = ("xorigin", "yorigin")


@dataclass(frozen=True)
class Calibration:
    """What a TIFF records about its pixels' physical size.

    ``resolution``: (x, y) pixels per ``resolution_unit`` (1 none, 2 inch, 3 cm), None without the tags;
    ``imagej``: the ImageJ header's entries that describe the image (unit, spacing, display range,
    origin, ...), {} when the file is not an ImageJ TIFF; ``ome``: the OME Pixels element's physical
    sizes and units (``PhysicalSizeX``, ``PhysicalSizeXUnit``, ...), None when the file is not OME.
    """

    resolution: tuple[float, float] | None = None
    resolution_unit: int = 2
    imagej: dict = field(default_factory=dict)
    ome: dict | None = None

    def scaled(self, factor: float) -> Calibration:
        """The calibration of the image enlarged ``factor`` times: more pixels per unit, smaller
        physical pixels, the origin at the same place. Resolutions that say nothing about the
        sample (72 and 96 dpi) are kept as they are."""
        resolution = self.resolution
        if resolution is not None and not self._screen_default():
            resolution = (resolution[0] * factor, resolution[1] * factor)
        imagej = {key: value * factor if key in _IMAGEJ_IN_PIXELS and isinstance(value, (int, float)) else value
                  for key, value in self.imagej.items()}
        ome = None
        if self.ome is not None:
            ome = {key: value / factor if key in ("PhysicalSizeX", "PhysicalSizeY") else value
                   for key, value in self.ome.items()}
        return replace(self, resolution=resolution, imagej=imagej, ome=ome)

    def _screen_default(self) -> bool:
        return self.imagej.get("unit") is None and self.resolution_unit == 2 and self.resolution[0] in SCREEN_DPI

    def pixel_size_um(self) -> float:
        """Side of a pixel in micrometres, NaN when the file does not say: OME's physical size,
        else the resolution tags in the ImageJ header's unit (a unit that is no length, such as
        'pixel', says nothing), else in ResolutionUnit cm or inch (except 72 and 96 dpi). The
        mean of the two axes when they differ."""
        if self.ome and "PhysicalSizeX" in self.ome:
            sizes = [self.ome[f"PhysicalSize{axis}"] * MICRONS_PER_UNIT.get(self.ome.get(f"PhysicalSize{axis}Unit"),
                                                                             math.nan)
                     for axis in "XY" if f"PhysicalSize{axis}" in self.ome]
            return sum(sizes) / len(sizes)
        if self.resolution is None or not all(self.resolution):
            return math.nan
        if self.imagej.get("unit") is not None:
            microns = MICRONS_PER_UNIT.get(str(self.imagej["unit"]).strip().lower(), math.nan)
        elif self._screen_default():
            return math.nan
        else:
            microns = _MICRONS_PER_RESOLUTION_UNIT.get(self.resolution_unit, math.nan)
        return (microns / self.resolution[0] + microns / self.resolution[1]) / 2


def is_tiff(data: bytes) -> bool:
    """Classic (``II*``/``MM*``) or BigTIFF (``II+``/``MM+``) byte order mark."""
    return data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def header_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) of a classic TIFF's first image from its first IFD, read by hand so that a
    decompression bomb is refused before any library parses it; None when the entries are missing."""
    endian = "<" if data[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack(endian + "I", data[4:8])
        (count,) = struct.unpack(endian + "H", data[offset : offset + 2])
        size = {}
        for i in range(count):
            entry = data[offset + 2 + 12 * i : offset + 14 + 12 * i]
            tag, kind = struct.unpack(endian + "HH", entry[:4])
            if tag in (256, 257):  # ImageWidth, ImageLength
                fmt = endian + ("H" if kind == 3 else "I")
                size[tag] = struct.unpack(fmt, entry[8 : 8 + struct.calcsize(fmt)])[0]
        return (size[257], size[256]) if len(size) == 2 else None
    except (struct.error, KeyError):
        return None


def _rational(value) -> float | None:
    numerator, denominator = value if isinstance(value, tuple) else (value, 1)
    return numerator / denominator if numerator and denominator else None


def _ome_sizes(xml: str) -> dict | None:
    """PhysicalSizeX/Y and their units from the first OME Pixels element; None for bad XML."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    sizes = {}
    for axis in "XY":
        try:
            value = float(pixels.get(f"PhysicalSize{axis}", "nan"))
        except ValueError:
            continue
        if math.isfinite(value) and value > 0:
            sizes[f"PhysicalSize{axis}"] = value
            sizes[f"PhysicalSize{axis}Unit"] = pixels.get(f"PhysicalSize{axis}Unit", "\u00b5m")  # OME's default
    return sizes


def read_calibration(data: bytes) -> Calibration | None:
    """The calibration of a TIFF's first image; None for a file tifffile cannot parse (the
    decoder then decides whether it is an image at all)."""
    if not is_tiff(data):
        return None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            tags = tif.pages.first.tags
            x = _rational(tags["XResolution"].value) if "XResolution" in tags else None
            y = _rational(tags["YResolution"].value) if "YResolution" in tags else None
            unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2  # TIFF's default: inch
            imagej = {key: value for key, value in (tif.imagej_metadata or {}).items()
                      if key not in _IMAGEJ_STRUCTURE and isinstance(value, (str, int, float, bool))}
            ome = _ome_sizes(tif.ome_metadata) if tif.is_ome and tif.ome_metadata else None
    except (tifffile.TiffFileError, ValueError, KeyError, IndexError, struct.error):
        return None
    resolution = (x, y or x) if x else None
    return Calibration(resolution, unit, imagej, ome)


def encode(image: np.ndarray, calibration: Calibration | None = None) -> bytes:
    """A 2-D uint8/uint16 image as TIFF bytes carrying ``calibration`` (scale it first with
    :meth:`Calibration.scaled`): an ImageJ TIFF when the calibration came from one, an OME-TIFF
    when it came from one (resolution tags written too), a plain TIFF with resolution tags else."""
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"cannot write a {image.dtype} image of shape {image.shape} as TIFF "
                         "(2-D uint8 or uint16 expected)")
    calibration = calibration or Calibration()
    options: dict = {"metadata": None}
    if calibration.resolution is not None:
        options.update(resolution=calibration.resolution, resolutionunit=calibration.resolution_unit)
    if calibration.imagej:
        options.update(imagej=True, metadata={"axes": "YX", **calibration.imagej})
    elif calibration.ome is not None:
        options.update(ome=True, metadata={"axes": "YX", **calibration.ome})
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.ascontiguousarray(image), photometric="minisblack", **options)
    return buffer.getvalue()
