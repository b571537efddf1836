"""Tests for karyosr.io.images: decoding to 2-D grayscale, header sizes, and rejected inputs."""

from __future__ import annotations

import io
import os
import re
import struct
import sys
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from karyosr.io import images
from karyosr.io.images import ImageRejected, decode_grayscale, header_size

BIG = 10**8


def _gradient(h, w, dtype):
    peak = np.iinfo(dtype).max
    values = (np.arange(h * w, dtype=np.float64).reshape(h, w) * 7919) % (peak + 1)
    return values.astype(dtype)


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".tiff"])
def test_decode_uint8_lossless_formats(encode, ext):
    image = _gradient(23, 37, np.uint8)
    decoded, converted = decode_grayscale(encode(image, ext), BIG)
    assert converted == ""
    assert decoded.dtype == np.uint8 and decoded.ndim == 2
    np.testing.assert_array_equal(decoded, image)
    assert decoded.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_decode_uint16_stays_uint16(encode, ext):
    image = _gradient(31, 17, np.uint16)
    assert image.max() > 255
    decoded, converted = decode_grayscale(encode(image, ext), BIG)
    assert converted == ""
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, image)


def test_decode_jpeg_grayscale(encode):
    image = np.full((24, 40), 128, np.uint8)
    image[8:16, 10:30] = 40
    decoded, converted = decode_grayscale(encode(image, ".jpg"), BIG)
    assert converted == "" and decoded.dtype == np.uint8 and decoded.shape == image.shape
    assert np.abs(decoded.astype(int) - image).mean() < 5


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif"])
def test_decode_rgb_to_luminance(encode, ext):
    bgr = np.zeros((10, 12, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 50, 100, 200  # B, G, R
    bgr[:5, :, :] = 255
    decoded, converted = decode_grayscale(encode(bgr, ext), BIG)
    assert converted == "rgb"
    assert decoded.shape == (10, 12) and decoded.dtype == np.uint8
    expected = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)  # ITU-R BT.601
    assert abs(int(decoded[-1, 0]) - expected) <= 1
    assert decoded[0, 0] == 255


def test_decode_rgba_drops_alpha(encode):
    bgra = np.zeros((8, 9, 4), np.uint8)
    bgra[..., 1] = 200
    bgra[..., 3] = np.arange(9, dtype=np.uint8) * 20  # alpha must not matter
    decoded, converted = decode_grayscale(encode(bgra, ".png"), BIG)
    assert converted == "rgba"
    assert decoded.shape == (8, 9)
    assert np.all(np.abs(decoded.astype(int) - round(0.587 * 200)) <= 1)


def test_decode_rgb_uint16(encode):
    bgr = np.zeros((6, 7, 3), np.uint16)
    bgr[..., 2] = 40000
    decoded, converted = decode_grayscale(encode(bgr, ".png"), BIG)
    assert converted == "rgb" and decoded.dtype == np.uint16 and decoded.shape == (6, 7)
    assert abs(int(decoded[0, 0]) - round(0.299 * 40000)) <= 2


def test_zero_byte_file():
    with pytest.raises(ImageRejected, match="empty"):
        decode_grayscale(b"", BIG)


def test_random_bytes():
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(ImageRejected, match="cannot decode"):
        decode_grayscale(data, BIG)


def test_text_file():
    with pytest.raises(ImageRejected, match="cannot decode"):
        decode_grayscale(b"path,label,group\nx.png,1,a\n", BIG)


def test_truncated_png(encode):
    image = np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)
    data = encode(image, ".png")
    with pytest.raises(ImageRejected, match="corrupt or truncated"):
        decode_grayscale(data[: len(data) // 2], BIG)


def test_image_rejected_is_value_error():
    assert issubclass(ImageRejected, ValueError)


# --------------------------------------------------------------------------- header sizes


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".jpg"])
@pytest.mark.parametrize("shape", [(30, 47), (47, 30), (1, 300)])
def test_header_size(encode, ext, shape):
    assert header_size(encode(np.zeros(shape, np.uint8), ext)) == shape


def test_header_size_uint16_and_colour(encode):
    assert header_size(encode(np.zeros((33, 21), np.uint16), ".png")) == (33, 21)
    assert header_size(encode(np.zeros((33, 21), np.uint16), ".tif")) == (33, 21)
    assert header_size(encode(np.zeros((12, 70, 3), np.uint8), ".jpg")) == (12, 70)
    assert header_size(encode(np.zeros((12, 70, 3), np.uint8), ".bmp")) == (12, 70)


def test_header_size_progressive_jpeg():
    ok, buf = cv2.imencode(".jpg", np.zeros((40, 50), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    assert header_size(buf.tobytes()) == (40, 50)


def test_header_size_top_down_bmp(encode):
    data = bytearray(encode(np.zeros((40, 50), np.uint8), ".bmp"))
    data[22:26] = struct.pack("<i", -40)  # negative height: rows stored top-down
    assert header_size(bytes(data)) == (40, 50)


def _tiff(endian: str, width: int, height: int, width_type: int, height_type: int) -> bytes:
    """A minimal TIFF header with ImageWidth/ImageLength as SHORT (3) or LONG (4)."""
    magic = b"II*\x00" if endian == "<" else b"MM\x00*"

    def entry(tag, kind, value):
        packed = struct.pack(endian + ("H2x" if kind == 3 else "I"), value)
        return struct.pack(endian + "HHI", tag, kind, 1) + packed

    ifd = struct.pack(endian + "H", 2) + entry(256, width_type, width) + entry(257, height_type, height)
    return magic + struct.pack(endian + "I", 8) + ifd + b"\x00\x00\x00\x00"


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("kinds", [(3, 3), (4, 4), (3, 4)])
def test_header_size_handmade_tiff(endian, kinds):
    assert header_size(_tiff(endian, 300, 70000 if kinds[1] == 4 else 200, *kinds)) == (
        70000 if kinds[1] == 4 else 200, 300)


@pytest.mark.parametrize(
    "data",
    [b"", b"GIF89a" + b"\x00" * 30, b"\x89PNG\r\n\x1a\n", b"BM\x00", b"II*\x00\xff\xff\xff\xff",
     b"MM\x00*\x00\x00\x00\x08", b"\xff\xd8\xff", b"\xff\xd8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"],
    ids=["empty", "gif", "png-sig-only", "bmp-short", "tiff-bad-offset", "tiff-no-ifd", "jpeg-short", "jpeg-garbage"],
)
def test_header_size_unknown_or_short_is_none(data):
    assert header_size(data) is None


# --------------------------------------------------------------------------- size guard


def _no_decode(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("cv2.imdecode must not be called for an oversized image")

    monkeypatch.setattr(images.cv2, "imdecode", fail)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".jpg"])
def test_oversized_rejected_without_decoding(encode, monkeypatch, ext):
    data = encode(np.zeros((40, 50), np.uint8), ext)
    _no_decode(monkeypatch)
    with pytest.raises(ImageRejected) as info:
        decode_grayscale(data, max_pixels=1999)
    message = str(info.value)
    assert "40x50" in message and "2000" in message and "ingest.max_pixels" in message and "1999" in message


def test_decompression_bomb_header(encode, monkeypatch):
    data = bytearray(encode(np.zeros((4, 4), np.uint8), ".png"))
    data[16:24] = struct.pack(">II", 100_000, 100_000)  # IHDR claims 10^10 pixels
    _no_decode(monkeypatch)
    with pytest.raises(ImageRejected, match="exceeds ingest.max_pixels"):
        decode_grayscale(bytes(data), max_pixels=50_000_000)


def test_image_at_the_limit_is_decoded(encode):
    image = _gradient(40, 50, np.uint8)
    decoded, _ = decode_grayscale(encode(image, ".png"), max_pixels=2000)
    np.testing.assert_array_equal(decoded, image)


def test_oversized_unrecognised_format_rejected(encode):
    data = encode(np.zeros((40, 50), np.uint8), ".pgm")
    assert header_size(data) is None
    with pytest.raises(ImageRejected):
        decode_grayscale(data, max_pixels=100)


# --------------------------------------------------------------------------- decoder warnings (libjpeg)
#
# What libjpeg (through cv2.imdecode) really does, checked with OpenCV 4.13: bytes after the EOI
# marker are ignored silently; bytes inserted before it print "Corrupt JPEG data: N extraneous
# bytes before marker 0xd9" (N counts the bytes the Huffman decoder had not already buffered); a
# file cut in the middle of the scan and closed with an EOI prints "Corrupt JPEG data: premature
# end of data segment" and decodes (the missing blocks filled in); a file that merely stops
# (no EOI) does not decode from memory at all and prints nothing (cv2.imread of the same file
# would print "Premature end of JPEG file" and pad it; ingest refuses half files).


def _photo(h=48, w=64):
    rng = np.random.default_rng(3)
    return cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3)).astype(np.uint8), (0, 0), 2)


def _scan_middle(data: bytes) -> int:
    return (data.find(b"\xff\xda") + len(data)) // 2


def test_jpeg_trailing_garbage_decodes_without_warning(encode):
    data = encode(_photo(), ".jpg")
    decoded = images.decode_image(data + b"trailing garbage after the EOI marker", BIG)
    assert decoded.warning == "" and decoded.converted == "rgb" and decoded.image.shape == (48, 64)
    clean = images.decode_image(data, BIG)
    np.testing.assert_array_equal(decoded.image, clean.image)


def test_jpeg_bytes_before_eoi_kept_with_libjpeg_warning(encode, capfd):
    data = encode(_photo(), ".jpg")
    decoded = images.decode_image(data[:-2] + b"\x5a" * 16 + data[-2:], BIG)
    assert decoded.image.shape == (48, 64) and decoded.image.dtype == np.uint8
    assert re.fullmatch(r"Corrupt JPEG data: \d+ extraneous bytes before marker 0xd9", decoded.warning), decoded.warning
    # captured, not printed; and the process's stderr works again afterwards
    os.write(2, b"stderr is back\n")
    err = capfd.readouterr().err
    assert "Corrupt JPEG" not in err and "stderr is back" in err


def test_jpeg_cut_short_and_closed_decodes_with_warning(encode):
    data = encode(_photo(), ".jpg")
    decoded = images.decode_image(data[: _scan_middle(data)] + b"\xff\xd9", BIG)
    assert decoded.warning == "Corrupt JPEG data: premature end of data segment"
    assert decoded.image.shape == (48, 64)


def test_jpeg_that_stops_is_not_decoded(encode):
    data = encode(_photo(), ".jpg")
    for cut in (data[: _scan_middle(data)], data[:-2], data[:150]):
        with pytest.raises(ImageRejected, match="cannot decode"):
            images.decode_image(cut, BIG)


def test_clean_images_have_no_warning(encode):
    for ext in (".png", ".tif", ".bmp", ".jpg"):
        decoded = images.decode_image(encode(_gradient(9, 11, np.uint8), ext), BIG)
        assert decoded.warning == "" and np.isnan(decoded.pixel_size_um)
        assert (decoded.rescale_slope, decoded.rescale_intercept) == (1.0, 0.0)


def test_warnings_stay_with_their_image_across_threads(encode):
    data = encode(_photo(), ".jpg")
    corrupt = data[:-2] + b"\x5a" * 16 + data[-2:]
    jobs = [corrupt if i % 2 else data for i in range(40)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda d: images.decode_image(d, BIG).warning, jobs))
    assert all(("extraneous bytes" in w) == bool(i % 2) for i, w in enumerate(results)), results


def test_decode_grayscale_keeps_its_two_values(encode):
    image, converted = decode_grayscale(encode(_photo(), ".jpg"), BIG)
    assert converted == "rgb" and image.shape == (48, 64)


# --------------------------------------------------------------------------- TIFF pixel size


@pytest.mark.parametrize("unit, dpi, expected", [(3, 20000, 0.5), (2, 25400, 1.0), (2, 72, np.nan), (2, 96, np.nan),
                                                 (1, 20000, np.nan)], ids=["cm", "inch", "72dpi", "96dpi", "none"])
def test_tiff_resolution_tags(unit, dpi, expected):
    ok, buf = cv2.imencode(".tif", _gradient(8, 10, np.uint16), [cv2.IMWRITE_TIFF_RESUNIT, unit,
                                                                cv2.IMWRITE_TIFF_XDPI, dpi, cv2.IMWRITE_TIFF_YDPI, dpi])
    assert ok
    decoded = images.decode_image(buf.tobytes(), BIG)
    assert decoded.image.dtype == np.uint16
    np.testing.assert_allclose(decoded.pixel_size_um, expected, equal_nan=True)


def test_tiff_imagej_unit_in_description(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    path = tmp_path / "ij.tif"
    info = {270: "ImageJ=1.54f\nunit=micron\n", 282: 4.0, 283: 2.0, 296: 1}
    Image.fromarray(_gradient(6, 7, np.uint8)).save(path, tiffinfo=info)
    assert images.decode_image(path.read_bytes(), BIG).pixel_size_um == pytest.approx((0.25 + 0.5) / 2)
    Image.fromarray(_gradient(6, 7, np.uint8)).save(path, tiffinfo={**info, 270: "ImageJ=1.54f\nunit=nm\n"})
    assert images.decode_image(path.read_bytes(), BIG).pixel_size_um == pytest.approx(0.375e-3)
    Image.fromarray(_gradient(6, 7, np.uint8)).save(path, tiffinfo={**info, 270: "ImageJ=1.54f\nunit=pixel\n"})
    assert np.isnan(images.decode_image(path.read_bytes(), BIG).pixel_size_um)


# --------------------------------------------------------------------------- DICOM


def dicom_bytes(pixels, photometric="MONOCHROME2", bits=None, signed=False, slope=None, intercept=None,
                spacing=None, frames=None, preamble=True, extra=None):
    """A small DICOM file (implicit VR little endian) written by pydicom; ``extra(ds)`` adds elements."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ImplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    colour = photometric == "RGB"
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    if frames:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if spacing is not None:
        ds.PixelSpacing = spacing
    ds.PixelData = pixels.tobytes()
    if extra:
        extra(ds)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=preamble)
    assert pydicom.dcmread(io.BytesIO(out.getvalue()), force=True).Rows == ds.Rows
    return out.getvalue()


def _physical(decoded):
    return decoded.image.astype(float) * decoded.rescale_slope + decoded.rescale_intercept


def test_dicom_ct_hounsfield_shifted_to_uint16():
    stored = np.array([[0, 24, 1024], [2048, 3000, 4095]], np.uint16)  # 12 bits; HU = stored - 1024
    decoded = images.decode_image(dicom_bytes(stored, bits=12, slope="1", intercept="-1024",
                                              spacing=["0.5", "0.5"]), BIG, "slice.dcm")
    assert decoded.image.dtype == np.uint16 and decoded.image.shape == (2, 3)
    np.testing.assert_array_equal(decoded.image, stored)  # HU + 1024: the lowest HU the bits allow is 0
    assert (decoded.rescale_slope, decoded.rescale_intercept) == (1.0, -1024.0)
    np.testing.assert_array_equal(_physical(decoded), stored.astype(float) - 1024)
    assert decoded.pixel_size_um == 500.0 and decoded.converted == "" and decoded.warning == ""


def test_dicom_signed_shifted_by_the_lowest_possible_value():
    hu = np.array([[-2000, -1024, 0, 3000]], np.int16)
    decoded = images.decode_image(dicom_bytes(hu, signed=True, slope=1, intercept=-1024,
                                              spacing=["0.7", "0.8"]), BIG, "s.dcm")
    assert decoded.image.dtype == np.uint16
    np.testing.assert_array_equal(decoded.image.astype(int), hu.astype(int) - 1024 + 32768 + 1024)
    np.testing.assert_array_equal(_physical(decoded), hu.astype(float) - 1024)
    assert decoded.pixel_size_um == pytest.approx(750.0)  # mean of row and column spacing


def test_dicom_fractional_slope_keeps_stored_values():
    stored = np.array([[0, 100, 1001, 65535]], np.uint16)
    decoded = images.decode_image(dicom_bytes(stored, slope="0.25", intercept="-10.5"), BIG, "pet.dcm")
    np.testing.assert_array_equal(decoded.image, stored)
    assert (decoded.rescale_slope, decoded.rescale_intercept) == (0.25, -10.5)
    np.testing.assert_allclose(_physical(decoded), stored * 0.25 - 10.5)
    assert np.isnan(decoded.pixel_size_um)


def test_dicom_without_rescale_stays_as_stored():
    stored = np.array([[0, 5, 4095]], np.uint16)
    decoded = images.decode_image(dicom_bytes(stored, bits=12), BIG, "mr.dcm")
    np.testing.assert_array_equal(decoded.image, stored)
    assert decoded.image.dtype == np.uint16 and (decoded.rescale_slope, decoded.rescale_intercept) == (1.0, 0.0)


def test_dicom_monochrome1_inverted():
    decoded = images.decode_image(dicom_bytes(np.array([[0, 100, 255]], np.uint8), "MONOCHROME1"), BIG, "x.dcm")
    assert decoded.image.dtype == np.uint8
    np.testing.assert_array_equal(decoded.image, [[255, 155, 0]])
    np.testing.assert_array_equal(_physical(decoded), [[0, 100, 255]])  # slope -1: values still map back
    stored = np.array([[0, 1000, 4095]], np.uint16)
    decoded = images.decode_image(dicom_bytes(stored, "MONOCHROME1", bits=12, slope=1, intercept=-1024), BIG, "y.dcm")
    np.testing.assert_array_equal(decoded.image, [[4095, 3095, 0]])
    np.testing.assert_array_equal(_physical(decoded), stored.astype(float) - 1024)


def test_dicom_rgb_to_grey():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 200  # red
    decoded = images.decode_image(dicom_bytes(rgb, "RGB"), BIG, "c.dcm")
    assert decoded.converted == "rgb" and decoded.image.shape == (2, 3) and decoded.image.dtype == np.uint8
    assert np.all(decoded.image == round(0.299 * 200))


def test_dicom_found_by_preamble_without_extension():
    data = dicom_bytes(np.array([[1, 2], [3, 4]], np.uint16))
    image, converted = decode_grayscale(data, BIG)  # no name: the 'DICM' preamble tells
    np.testing.assert_array_equal(image, [[1, 2], [3, 4]])


def test_dicom_without_preamble_read_by_extension():
    data = dicom_bytes(np.array([[1, 2], [3, 4]], np.uint16), preamble=False)
    assert data[128:132] != b"DICM"
    np.testing.assert_array_equal(images.decode_image(data, BIG, "IM0001.DCM").image, [[1, 2], [3, 4]])


def test_dicom_multiframe_quarantined():
    with pytest.raises(ImageRejected, match=r"multi-frame DICOM \(3 frames\)"):
        images.decode_image(dicom_bytes(np.zeros((3, 4, 5), np.uint16), frames=3), BIG, "cine.dcm")


def test_dicom_oversized_quarantined():
    with pytest.raises(ImageRejected, match=r"40x50 = 2000 pixels exceeds ingest.max_pixels 1999"):
        images.decode_image(dicom_bytes(np.zeros((40, 50), np.uint16)), 1999, "big.dcm")


@pytest.mark.parametrize("data", [b"", b"not a DICOM file" * 20, b"\x00" * 128 + b"DICM" + b"\x02\x00"],
                         ids=["empty", "text", "preamble-only"])
def test_broken_dicom_quarantined(data):
    with pytest.raises(ImageRejected, match="empty|cannot decode"):
        images.decode_image(data, BIG, "broken.dcm")


def test_dicom_without_pydicom(monkeypatch):
    data = dicom_bytes(np.zeros((2, 2), np.uint16))
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom now raises ImportError
    with pytest.raises(ImageRejected) as info:
        images.decode_image(data, BIG, "x.dcm")
    assert str(info.value) == "install karyosr[dicom] (pydicom) to read DICOM files"


def test_dicom_palette_colour_to_grey():
    def palette(ds):
        for colour, entries in zip(("Red", "Green", "Blue"), ([0, 65535, 0, 0], [0, 0, 65535, 0], [0, 0, 0, 65535])):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [4, 0, 16])
            setattr(ds, f"{colour}PaletteColorLookupTableData", np.array(entries, np.uint16).tobytes())

    data = dicom_bytes(np.array([[0, 1, 2, 3]], np.uint8), "PALETTE COLOR", extra=palette)
    decoded = images.decode_image(data, BIG, "p.dcm")
    assert decoded.converted == "palette" and decoded.image.dtype == np.uint16
    np.testing.assert_allclose(decoded.image[0].astype(float), [0, 0.299 * 65535, 0.587 * 65535, 0.114 * 65535], atol=2)


def test_dicom_compressed_pixel_data_that_does_not_decode_quarantined():
    pydicom = pytest.importorskip("pydicom")
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(np.zeros((8, 8), np.uint16))))
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8 not a JPEG-LS stream \xff\xd9"])
    ds["PixelData"].VR = "OB"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    with pytest.raises(ImageRejected, match="cannot decode DICOM pixel data") as info:
        images.decode_image(out.getvalue(), BIG, "ls.dcm")
    assert "\n" not in str(info.value)
