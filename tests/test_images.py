"""Tests for karyosr.io.images: decoding to 2-D grayscale, header sizes, and rejected inputs."""

from __future__ import annotations

import struct

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
