"""Decoding raw image files into 2-D grayscale arrays, with the checks that keep bad files out."""

from __future__ import annotations

import struct

import cv2
import numpy as np


def data_range(dtype) -> float:
    """The peak grey value of an image type: images are uint8 or uint16 (see decode_grayscale)."""
    return 65535.0 if np.dtype(dtype) == np.uint16 else 255.0


def grey_levels_per_8bit_level(dtype) -> float:
    """How many grey levels of this image type one 8-bit level spans (257 for uint16): thresholds
    are kept on the 8-bit scale whatever the bit depth."""
    return data_range(dtype) / 255.0


class ImageRejected(ValueError):
    """An input image that cannot enter the dataset; the message is the quarantine reason."""


def header_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) read from a PNG, BMP, TIFF or JPEG header without decoding pixels.

    Used to refuse decompression bombs before the decoder allocates them; None when the format
    is not recognised (the decoder then decides).
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(height), abs(width)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
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


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 9 < len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return height, width
        pos += 2 + length
    return None


def decode_grayscale(data: bytes, max_pixels: int) -> tuple[np.ndarray, str]:
    """Decode an image file's bytes to a 2-D uint8 or uint16 array.

    Returns the image and how it was converted: '' (already grayscale), 'rgb' or 'rgba'
    (ITU-R BT.601 luminance, alpha dropped). Raises ImageRejected with the reason otherwise.
    """
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    size = header_size(data)
    if size and size[0] * size[1] > max_pixels:
        raise ImageRejected(
            f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels exceeds ingest.max_pixels {max_pixels}"
        )
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageRejected("cannot decode: not an image, or corrupt or truncated")
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageRejected(f"unsupported pixel type {image.dtype.name} (expected 8- or 16-bit integers)")
    converted = ""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        converted = "rgb" if image.shape[2] == 3 else "rgba"
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        image = cv2.cvtColor(image, code)
    elif image.ndim != 2:
        raise ImageRejected(f"unsupported image shape {image.shape}")
    if image.size == 0:
        raise ImageRejected("image has no pixels")
    if image.size > max_pixels:
        # Formats whose header header_size() cannot read are checked after decoding.
        raise ImageRejected(f"{image.shape[0]}x{image.shape[1]} = {image.size} pixels exceeds ingest.max_pixels {max_pixels}")
    return np.ascontiguousarray(image), converted
