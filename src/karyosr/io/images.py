"""Decoding raw image files into 2-D grayscale arrays, with the checks that keep bad files out.

PNG, BMP, TIFF and JPEG go through OpenCV; what its codec libraries print to the C stderr while
decoding (libjpeg's "Corrupt JPEG data: ..." warnings) is captured and returned with the image.
DICOM (``.dcm``, or any file with the ``DICM`` preamble) goes through pydicom, the optional extra
``karyosr[dicom]``: see ``_decode_dicom`` for the mapping of its values to uint16. A TIFF's pixel
size (resolution tags, ImageJ header, OME-XML) is read by karyosr.io.tiff.
"""

from __future__ import annotations

import io
import math
import os
import struct
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

from karyosr.io import tiff


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
        return tiff.header_size(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
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


# What a .dcm file is quarantined with when the optional extra is not installed.
DICOM_EXTRA_MISSING = "install karyosr[dicom] (pydicom) to read DICOM files"
# Longest decode_warning kept (a badly damaged JPEG can make libjpeg print many lines).
MAX_WARNING_CHARS = 1000


@dataclass(frozen=True)
class Decoded:
    """A decoded image and what ingest records about it (manifest columns converted_from,
    decode_warning, pixel_size_um, rescale_slope, rescale_intercept).

    ``converted``: '' (already grey), 'rgb', 'rgba' or 'palette' (converted to grey);
    ``warning``: what the decoder warned about ('' when nothing), e.g. libjpeg's
    "Corrupt JPEG data: 2 extraneous bytes before marker 0xd9";
    ``pixel_size_um``: side of a pixel in micrometres (NaN when the file does not say);
    ``rescale_slope``, ``rescale_intercept``: the physical value of a pixel (DICOM: the modality
    value, e.g. Hounsfield units) is ``pixel * rescale_slope + rescale_intercept``; 1 and 0 for
    every file that is not DICOM (the value is the grey level in the file);
    ``calibration``: a TIFF's pixel size records (karyosr.io.tiff.Calibration), None for other files.
    """

    image: np.ndarray
    converted: str = ""
    warning: str = ""
    pixel_size_um: float = math.nan
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    calibration: tiff.Calibration | None = None


def _tidy_warning(text: str) -> str:
    lines = [line.strip() for line in text.splitlines()]
    joined = "; ".join(dict.fromkeys(line for line in lines if line))
    return joined if len(joined) <= MAX_WARNING_CHARS else joined[: MAX_WARNING_CHARS - 1] + "\u2026"


# libjpeg (and libpng, libtiff, OpenCV's own log) print warnings to the C stderr, file descriptor 2,
# where Python cannot see them. Decoding redirects descriptor 2 into a temporary file meanwhile; the
# lock keeps two threads of one process from swapping the descriptor under each other (anything
# another thread prints to descriptor 2 during a decode lands in that decode's warning).
_STDERR_LOCK = threading.Lock()
_SINK: dict = {"pid": None, "file": None}


def _sink_fd() -> int:
    # One file per process: after a fork the child would share the parent's file offset.
    if _SINK["pid"] != os.getpid():
        _SINK["file"] = tempfile.TemporaryFile()
        _SINK["pid"] = os.getpid()
    return _SINK["file"].fileno()


def _imdecode_with_messages(data: bytes) -> tuple[np.ndarray | None, str]:
    """cv2.imdecode, with what the codec libraries printed to stderr while it ran."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    with _STDERR_LOCK:
        try:
            sink = _sink_fd()
            saved = os.dup(2)
        except OSError:  # no descriptor 2 to redirect (a detached process): decode without capture
            return cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED), ""
        try:
            try:
                if sys.stderr is not None:
                    sys.stderr.flush()  # Python's pending output goes where it was meant to
            except (OSError, ValueError):
                pass
            os.ftruncate(sink, 0)
            os.lseek(sink, 0, os.SEEK_SET)
            os.dup2(sink, 2)
            try:
                image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
            finally:
                os.dup2(saved, 2)
        finally:
            os.close(saved)
        os.lseek(sink, 0, os.SEEK_SET)
        text = os.read(sink, 4 * MAX_WARNING_CHARS).decode("utf-8", "replace")
    return image, _tidy_warning(text)


def is_dicom(data: bytes, name: str = "") -> bool:
    """A ``.dcm`` file, or one with the DICOM preamble that is not also a PNG/BMP/TIFF/JPEG."""
    return name.lower().endswith(".dcm") or (data[128:132] == b"DICM" and header_size(data) is None)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _float(value, default: float = math.nan) -> float:
    try:
        return default if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return math.nan


def _dicom_pixel_size_um(ds) -> float:
    """PixelSpacing (mm, row then column; else ImagerPixelSpacing, at the detector, or that of an
    enhanced file's shared functional groups) in micrometres, the mean of both when they differ."""
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if not spacing:
        try:
            spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        except (AttributeError, IndexError, KeyError, TypeError):
            return math.nan
    try:
        values = [float(v) for v in spacing][:2]
    except TypeError:  # one number instead of two
        values = [_float(spacing)]
    except ValueError:
        return math.nan
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        return math.nan
    return 1000.0 * sum(values) / len(values)


def _decode_dicom(data: bytes, max_pixels: int) -> Decoded:
    """A single-frame DICOM image as a 2-D array; see config/README.md (dataset, DICOM).

    Grey images: the modality rescale (RescaleSlope, RescaleIntercept) is applied and the values
    are shifted up by the smallest value the stored bits can give, when that is negative (CT,
    Hounsfield units from -1024: pixel = HU + 1024), so that they fit uint16 without losing a
    level; 8-bit images whose values stay within 0..255 stay uint8. Where the rescale gives
    non-integer values (slope or intercept not whole numbers) or values that do not fit 16 bits,
    the stored values are kept (shifted to start at 0 when signed) instead. Either way
    ``pixel * rescale_slope + rescale_intercept`` is the modality value. MONOCHROME1 (white is
    low) is inverted to MONOCHROME2 within that range (the slope turns negative). RGB, YBR and
    PALETTE COLOR images become BT.601 luminance. Multi-frame files are quarantined (which frame
    would be the image is not for ingest to guess).
    """
    try:
        import pydicom
        from pydicom.pixels import apply_color_lut
    except ImportError:
        raise ImageRejected(DICOM_EXTRA_MISSING) from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problem = None
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            if "PixelData" not in ds:
                problem = ("cannot decode: no DICOM image (no integer pixel data: not DICOM, or a report, "
                           "a structured document, float pixels)")
            else:
                rows, cols = int(ds.Rows), int(ds.Columns)
                frames = int(ds.get("NumberOfFrames") or 1)
                samples = int(ds.get("SamplesPerPixel") or 1)
                photometric = str(ds.get("PhotometricInterpretation") or "MONOCHROME2").strip().upper()
                bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
                signed = int(ds.get("PixelRepresentation") or 0) == 1
                slope = _float(ds.get("RescaleSlope"), 1.0)
                intercept = _float(ds.get("RescaleIntercept"), 0.0)
                pixel_size = _dicom_pixel_size_um(ds)
        except Exception as exc:  # pydicom raises many kinds on a damaged file; each is a quarantine
            raise ImageRejected(f"cannot decode DICOM: {type(exc).__name__}: {_one_line(exc)}") from None
        if problem:
            raise ImageRejected(problem)
        if rows * cols > max_pixels:
            raise ImageRejected(f"{rows}x{cols} = {rows * cols} pixels exceeds ingest.max_pixels {max_pixels}")
        if frames > 1:
            raise ImageRejected(f"multi-frame DICOM ({frames} frames): ingest takes single images; "
                                "save each frame as a file of its own")
        if not 1 <= bits <= 16:
            raise ImageRejected(f"DICOM BitsStored {bits}: only up to 16 bits per sample are supported")
        if slope == 0 or not (math.isfinite(slope) and math.isfinite(intercept)):
            raise ImageRejected(f"DICOM RescaleSlope {slope} / RescaleIntercept {intercept} are not usable")
        grey = photometric in ("MONOCHROME1", "MONOCHROME2")
        if not ((samples == 1 and (grey or photometric == "PALETTE COLOR")) or samples == 3):
            raise ImageRejected(f"unsupported DICOM PhotometricInterpretation {photometric} "
                                f"with {samples} samples per pixel")
        try:
            stored = ds.pixel_array
            if photometric == "PALETTE COLOR":
                stored = apply_color_lut(stored, ds)
        except Exception as exc:
            raise ImageRejected(f"cannot decode DICOM pixel data: {type(exc).__name__}: {_one_line(exc)}") from None
    notes = [str(w.message) for w in caught]
    if stored.shape[:2] != (rows, cols):
        raise ImageRejected(f"DICOM pixel data of shape {stored.shape} does not match Rows x Columns {rows}x{cols}")

    if stored.ndim == 3:  # RGB (pydicom turns YBR into RGB) or a palette applied
        if stored.dtype not in (np.uint8, np.uint16):
            stored = np.clip(stored, 0, 65535).astype(np.uint16)
        image = cv2.cvtColor(np.ascontiguousarray(stored), cv2.COLOR_RGB2GRAY)
        converted = "palette" if photometric == "PALETTE COLOR" else "rgb"
        return Decoded(image, converted, _tidy_warning("\n".join(notes)), pixel_size)

    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    values = stored.astype(np.int64)
    ends = sorted((low * slope + intercept, high * slope + intercept))
    offset = max(0.0, -ends[0])
    if slope.is_integer() and intercept.is_integer() and ends[1] + offset <= 65535:
        values = values * int(slope) + int(intercept) + int(offset)
        out_slope, out_intercept = 1.0, 0.0 - offset  # 0.0, not -0.0, when nothing is shifted
        first, last = ends[0] + offset, ends[1] + offset
    else:  # keep the stored values: rounding to whole modality units would lose levels
        values = values - low
        out_slope, out_intercept = slope, intercept + slope * low
        first, last = 0, high - low
    if photometric == "MONOCHROME1":
        values = int(first + last) - values
        out_slope, out_intercept = -out_slope, out_intercept + out_slope * (first + last)
    dtype = np.uint8 if bits <= 8 and last <= 255 else np.uint16
    peak = np.iinfo(dtype).max
    outside = int(np.count_nonzero((values < 0) | (values > peak)))
    if outside:
        notes.append(f"{outside} pixel values outside 0..{peak} (beyond BitsStored {bits}) were clipped")
    image = np.clip(values, 0, peak).astype(dtype)
    return Decoded(image, "", _tidy_warning("\n".join(notes)), pixel_size, out_slope, out_intercept)


def decode_image(data: bytes, max_pixels: int, name: str = "") -> Decoded:
    """Decode an image file's bytes (``name``: its file name, for the ``.dcm`` extension) to a 2-D
    uint8 or uint16 array, with how it was converted and what the decoder warned about.

    Colour becomes ITU-R BT.601 luminance (alpha dropped). A file that decodes with warnings (a
    JPEG with bytes missing or extra) is kept with the warning; one that does not decode raises
    ImageRejected with the reason, as do oversized ones (refused from the header, undecoded).
    """
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    if is_dicom(data, name):
        decoded = _decode_dicom(data, max_pixels)
        if decoded.image.size == 0:
            raise ImageRejected("image has no pixels")
        return decoded
    size = header_size(data)
    if size and size[0] * size[1] > max_pixels:
        raise ImageRejected(
            f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels exceeds ingest.max_pixels {max_pixels}"
        )
    image, warning = _imdecode_with_messages(data)
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
    calibration = tiff.read_calibration(data)
    pixel_size = calibration.pixel_size_um() if calibration else math.nan
    return Decoded(np.ascontiguousarray(image), converted, warning, pixel_size, calibration=calibration)


def decode_grayscale(data: bytes, max_pixels: int, name: str = "") -> tuple[np.ndarray, str]:
    """Decode an image file's bytes to a 2-D uint8 or uint16 array (see decode_image).

    Returns the image and how it was converted: '' (already grayscale), 'rgb', 'rgba' or
    'palette' (ITU-R BT.601 luminance, alpha dropped). Raises ImageRejected with the reason otherwise.
    """
    decoded = decode_image(data, max_pixels, name)
    return decoded.image, decoded.converted
