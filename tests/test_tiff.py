"""TIFF calibration (karyosr.io.tiff): resolution tags, ImageJ and OME metadata read, scaled by
the SR factor and written back, checked by reading the files with tifffile itself."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import tifffile

from karyosr.io import tiff
from karyosr.io.images import decode_image

BIG = 10**8


def _tiff(image, **options) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image, **options)
    return buffer.getvalue()


def _image16():
    return (np.arange(6 * 7, dtype=np.uint32).reshape(6, 7) * 1531 % 65536).astype(np.uint16)


def test_imagej_10_px_per_micron_enlarged_x4_is_40_px_per_micron_and_16_bit():
    data = _tiff(_image16(), imagej=True, resolution=(10.0, 10.0),
                 metadata={"unit": "micron", "axes": "YX", "spacing": 0.5, "xorigin": 3, "min": 0, "max": 1000})
    calibration = tiff.read_calibration(data)
    assert calibration.pixel_size_um() == pytest.approx(0.1)
    enlarged = np.repeat(np.repeat(_image16(), 4, 0), 4, 1)
    with tifffile.TiffFile(io.BytesIO(tiff.encode(enlarged, calibration.scaled(4)))) as tif:
        assert tif.is_imagej and tif.pages.first.dtype == np.uint16
        np.testing.assert_array_equal(tif.asarray(), enlarged)
        tags = tif.pages.first.tags
        assert tags["XResolution"].value == (40, 1) and tags["YResolution"].value == (40, 1)
        # the unit, the z step and the display range stay; the origin (in pixels) moves with them
        ij = tif.imagej_metadata
        assert (ij["unit"], ij["spacing"], ij["min"], ij["max"], ij["xorigin"]) == ("micron", 0.5, 0, 1000, 12)
    assert decode_image(tiff.encode(enlarged, calibration.scaled(4)), BIG).pixel_size_um == pytest.approx(0.025)


def test_ome_physical_size_is_divided_by_the_factor():
    data = _tiff(_image16(), ome=True, metadata={"axes": "YX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.3,
                                                 "PhysicalSizeXUnit": "nm", "PhysicalSizeYUnit": "nm"})
    calibration = tiff.read_calibration(data)
    assert calibration.pixel_size_um() == pytest.approx(0.25e-3)
    with tifffile.TiffFile(io.BytesIO(tiff.encode(_image16(), calibration.scaled(2)))) as tif:
        assert tif.is_ome
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        assert pixels["PhysicalSizeX"] == pytest.approx(0.1) and pixels["PhysicalSizeY"] == pytest.approx(0.15)
        assert pixels["PhysicalSizeXUnit"] == "nm"


def test_plain_resolution_tags_scale_but_screen_defaults_stay():
    per_cm = tiff.read_calibration(_tiff(_image16(), resolution=(5000.0, 5000.0), resolutionunit="CENTIMETER"))
    assert per_cm.pixel_size_um() == pytest.approx(2.0)
    with tifffile.TiffFile(io.BytesIO(tiff.encode(_image16(), per_cm.scaled(4)))) as tif:
        assert not tif.is_imagej and not tif.is_ome
        assert tif.pages.first.tags["XResolution"].value == (20000, 1)
        assert int(tif.pages.first.tags["ResolutionUnit"].value) == 3
    screen = tiff.read_calibration(_tiff(_image16(), resolution=(72.0, 72.0), resolutionunit="INCH"))
    assert math.isnan(screen.pixel_size_um()) and screen.scaled(4).resolution == (72.0, 72.0)


def test_files_without_calibration():
    assert tiff.read_calibration(b"\x89PNG\r\n\x1a\n") is None
    assert tiff.read_calibration(b"II*\x00 truncated") is None
    bare = tiff.read_calibration(_tiff(np.zeros((4, 4), np.uint8), metadata=None))
    assert math.isnan(bare.pixel_size_um()) and not bare.imagej and bare.ome is None
    with pytest.raises(ValueError, match="float32 image of shape"):
        tiff.encode(np.zeros((4, 4), np.float32))
